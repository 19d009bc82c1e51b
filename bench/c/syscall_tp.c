/* The hook the tracepoint backend used before sched_process_exec: programs on
 * the execve and execveat syscall tracepoints, here doing nothing at all. What
 * they cost other system calls is not their own run time (they never run for
 * them) but the attachment: the first syscalls:sys_enter_* program sets the
 * syscall-tracepoint work flag on every task, and every system call of every
 * task then takes the slow path through syscall_trace_enter. */
TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
    return 0;
}
