/* Calls getppid() N times through syscall(2), so no libc cache can answer it:
 * a system call that is not exec, for what exec hooks cost everything else.
 * Prints one JSON object: the wall time of the loop (CLOCK_MONOTONIC around
 * it) and its CPU time (user + system, from getrusage), which leaves out the
 * time other work kept the loop waiting for a CPU.
 *
 * usage: getppid_loop [-g CGROUP_DIR] [-c CPU] N
 *   -g  move into this cgroup v2 directory first
 *   -c  pin to this CPU first */
#include "loop_setup.h"

#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static long long cpu_ns(void)
{
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);
    return timeval_ns(self.ru_utime) + timeval_ns(self.ru_stime);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "g:c:")) != -1) {
        if (opt == 'g' && join_cgroup(optarg) == 0)
            continue;
        if (opt == 'c' && pin_cpu(atoi(optarg)) == 0)
            continue;
        fprintf(stderr, "usage: %s [-g CGROUP_DIR] [-c CPU] N\n", argv[0]);
        return 2;
    }
    if (argc - optind != 1) {
        fprintf(stderr, "usage: %s [-g CGROUP_DIR] [-c CPU] N\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[optind], NULL, 10);
    long parent = 0;

    long long started = now_ns(), cpu_started = cpu_ns();
    for (long i = 0; i < n; i++)
        parent += syscall(SYS_getppid);
    long long elapsed = now_ns() - started, cpu = cpu_ns() - cpu_started;

    if (parent != n * (long)getppid()) {
        fprintf(stderr, "getppid returned something else during the loop\n");
        return 1;
    }
    printf("{\"calls\": %ld, \"elapsed_ns\": %lld, \"cpu_ns\": %lld}\n", n, elapsed, cpu);
    return 0;
}
