/* spawn PROGRAM [ARG...]: runs PROGRAM as a child (no shell, no PATH search)
 * and exits as it did: its status, or 128 + the signal that ended it. A
 * stand-in for a server (nginx, php-fpm) that starts a program: copied to the
 * path a policy's calledBy names, it is the calling program. SPAWN_WITH
 * picks how the child is made: fork (the default), vfork or posix_spawn (a
 * child sharing the parent's memory until its exec, as glibc makes it). */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static pid_t start(char **argv)
{
    const char *with = getenv("SPAWN_WITH");
    if (with && strcmp(with, "posix_spawn") == 0) {
        pid_t child = -1;
        return posix_spawn(&child, argv[0], NULL, NULL, argv, environ) == 0 ? child : -1;
    }
    pid_t child = with && strcmp(with, "vfork") == 0 ? vfork() : fork();
    if (child == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    return child;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    pid_t child = start(&argv[1]);
    if (child < 0) {
        perror("spawn");
        return 3;
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
