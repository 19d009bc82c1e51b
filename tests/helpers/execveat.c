/* execveat DIR NAME [ARG...]: runs NAME relative to directory DIR through the
 * execveat syscall (not execve), so tests can check that hook too. Static, so
 * it runs inside a busybox container. Exits 127 if the exec itself fails. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s DIR NAME [ARG...]\n", argv[0]);
        return 2;
    }
    int dirfd = open(argv[1], O_PATH | O_DIRECTORY);
    if (dirfd < 0) {
        perror(argv[1]);
        return 127;
    }
    syscall(SYS_execveat, dirfd, argv[2], &argv[2], environ, 0);
    perror("execveat");
    return 127;
}
