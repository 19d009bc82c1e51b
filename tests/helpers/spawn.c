/* spawn PROGRAM [ARG...]: runs PROGRAM as a child (fork and execv, no shell,
 * no PATH search) and exits as it did: its status, or 128 + the signal that
 * ended it. A stand-in for a server (nginx, php-fpm) that starts a program:
 * copied to the path a policy's calledBy names, it is the calling program. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    pid_t child = fork();
    if (child < 0)
        return 3;
    if (child == 0) {
        execv(argv[1], &argv[1]);
        perror("execv");
        _exit(127);
    }
    int status = 0;
    if (waitpid(child, &status, 0) < 0)
        return 4;
    if (WIFSIGNALED(status)) {
        printf("signal %d\n", WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}
