/* What the bench's C loops share: clocks, and the -g CGROUP_DIR and -c CPU
 * setup done before the loop starts. */
#ifndef LOOP_SETUP_H
#define LOOP_SETUP_H

#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long timeval_ns(struct timeval tv)
{
    return tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL;
}

/* Moves this process into a cgroup v2 directory (its children start there). */
static int join_cgroup(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    FILE *procs = fopen(path, "w");
    if (!procs || fprintf(procs, "%d\n", getpid()) < 0 || fclose(procs) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

/* Pins this process to one CPU (its children inherit it). */
static int pin_cpu(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
        perror("sched_setaffinity");
        return -1;
    }
    return 0;
}

#endif
