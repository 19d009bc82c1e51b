/* unpaged_exec PATH [ARG...]: execve()s PATH with the path string in a page
 * that is not yet resident: a MAP_SHARED mapping of a memfd, never touched by
 * this process. The kernel's own getname() faults it in and the exec goes
 * on; a BPF program reading the string from user memory
 * (bpf_probe_read_user_str, which cannot fault) sees nothing. Tests check
 * that enforcement does not depend on that string. Exits 127 if the exec
 * itself fails. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH [ARG...]\n", argv[0]);
        return 2;
    }
    size_t size = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = strlen(argv[1]) + 1;
    int fd = memfd_create("unpaged", MFD_CLOEXEC);
    if (fd < 0 || len > size || ftruncate(fd, (off_t)size) != 0 ||
        pwrite(fd, argv[1], len, 0) != (ssize_t)len) {
        perror("memfd");
        return 127;
    }
    char *path = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (path == MAP_FAILED) {
        perror("mmap");
        return 127;
    }
    execve(path, &argv[1], environ);
    perror("execve");
    return 127;
}
