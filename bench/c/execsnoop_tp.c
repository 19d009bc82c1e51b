/* bcc's execsnoop (tools/execsnoop.py, bcc 0.26), attached to the syscall
 * tracepoints instead of kprobes: same work per exec, for kernels without
 * kprobes. On entry: one perf event with the filename, then one per argument
 * (up to MAXARG, then "..."); on return: one more event with the result.
 *
 * task->real_parent->tgid is read as execsnoop reads it, through the kernel
 * headers bcc compiles against; where those do not match the running kernel
 * the value is wrong, but the read costs the same.
 *
 * -DMAXARG=N: how many arguments to copy (execsnoop's --max-args, 20). */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>
#include <linux/fs.h>

#define ARGSIZE 128

enum event_type {
    EVENT_ARG,
    EVENT_RET,
};

struct data_t {
    u32 pid;
    u32 ppid;
    u32 uid;
    char comm[TASK_COMM_LEN];
    enum event_type type;
    char argv[ARGSIZE];
    int retval;
};

BPF_PERF_OUTPUT(events);

static int __submit_arg(void *ctx, void *ptr, struct data_t *data)
{
    bpf_probe_read_user(data->argv, sizeof(data->argv), ptr);
    events.perf_submit(ctx, data, sizeof(struct data_t));
    return 1;
}

static int submit_arg(void *ctx, void *ptr, struct data_t *data)
{
    const char *argp = NULL;
    bpf_probe_read_user(&argp, sizeof(argp), ptr);
    if (argp)
        return __submit_arg(ctx, (void *)(argp), data);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    struct data_t data = {};
    struct task_struct *task;
    const char __user *const __user *argv = (const char __user *const __user *)args->argv;

    data.pid = bpf_get_current_pid_tgid() >> 32;
    task = (struct task_struct *)bpf_get_current_task();
    data.ppid = task->real_parent->tgid;
    bpf_get_current_comm(&data.comm, sizeof(data.comm));
    data.type = EVENT_ARG;

    __submit_arg(args, (void *)args->filename, &data);

    /* skip the first argument: the filename stands for it */
#pragma unroll
    for (int i = 1; i < MAXARG; i++) {
        if (submit_arg(args, (void *)&argv[i], &data) == 0)
            goto out;
    }
    char ellipsis[] = "...";
    __submit_arg(args, (void *)ellipsis, &data);
out:
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve)
{
    struct data_t data = {};
    struct task_struct *task;

    data.pid = bpf_get_current_pid_tgid() >> 32;
    data.uid = bpf_get_current_uid_gid() & 0xffffffff;
    task = (struct task_struct *)bpf_get_current_task();
    data.ppid = task->real_parent->tgid;
    bpf_get_current_comm(&data.comm, sizeof(data.comm));
    data.type = EVENT_RET;
    data.retval = args->ret;
    events.perf_submit(args, &data, sizeof(data));
    return 0;
}
