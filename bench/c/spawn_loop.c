/* Runs PATH N times, one after another: posix_spawn (vfork + exec) and wait.
 * Prints one JSON object: the wall time of the whole loop, the CPU time it
 * and its children used (user + system, which holds the BPF programs' time:
 * they run in the exec'ing child), and how each child ended, so a caller can
 * tell runs from kills. CPU time, unlike wall time, leaves out the time other
 * work on the machine kept the loop waiting for a CPU.
 *
 * usage: spawn_loop [-g CGROUP_DIR] [-c CPU] N PATH [ARG...]
 *   -g  move into this cgroup v2 directory first (its children start there)
 *   -c  pin to this CPU first (children inherit it)
 *   each child gets PATH as its argv[0], then the ARGs */
#include "loop_setup.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>

/* User + system time of this process and of its reaped children. */
static long long cpu_ns(void)
{
    struct rusage self, children;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    return timeval_ns(self.ru_utime) + timeval_ns(self.ru_stime) +
           timeval_ns(children.ru_utime) + timeval_ns(children.ru_stime);
}

int main(int argc, char **argv)
{
    int opt;
    /* "+": options end at N, so an ARG such as -o is the child's. */
    while ((opt = getopt(argc, argv, "+g:c:")) != -1) {
        if (opt == 'g' && join_cgroup(optarg) == 0)
            continue;
        if (opt == 'c' && pin_cpu(atoi(optarg)) == 0)
            continue;
        fprintf(stderr, "usage: %s [-g CGROUP_DIR] [-c CPU] N PATH [ARG...]\n", argv[0]);
        return 2;
    }
    if (argc - optind < 2) {
        fprintf(stderr, "usage: %s [-g CGROUP_DIR] [-c CPU] N PATH [ARG...]\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[optind], NULL, 10);
    char *path = argv[optind + 1];
    char **child_argv = &argv[optind + 1];   /* PATH, the ARGs, NULL */
    char *child_env[] = {NULL};
    long exited = 0, failed = 0, killed = 0, other = 0, spawn_errors = 0;
    int last_error = 0;

    long long started = now_ns(), cpu_started = cpu_ns();
    for (long i = 0; i < n; i++) {
        pid_t pid;
        int err = posix_spawn(&pid, path, NULL, NULL, child_argv, child_env);
        if (err != 0) {
            spawn_errors++;
            last_error = err;
            continue;
        }
        int status;
        while (waitpid(pid, &status, 0) < 0) {
            if (errno != EINTR) {
                perror("waitpid");
                return 1;
            }
        }
        if (WIFEXITED(status))
            WEXITSTATUS(status) == 0 ? exited++ : failed++;
        else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            killed++;
        else
            other++;
    }
    long long elapsed = now_ns() - started, cpu = cpu_ns() - cpu_started;

    printf("{\"execs\": %ld, \"elapsed_ns\": %lld, \"cpu_ns\": %lld, \"exited\": %ld, "
           "\"failed\": %ld, \"killed\": %ld, \"other\": %ld, \"spawn_errors\": %ld, "
           "\"last_error\": \"%s\"}\n",
           n, elapsed, cpu, exited, failed, killed, other, spawn_errors,
           last_error ? strerror(last_error) : "");
    return 0;
}
