/* The least a hand-written "kill program X in cgroup C" does, on the hook the
 * enforcer decides at: the caller's cgroup id compared to one id, and in that
 * cgroup only, the basename of the file that runs (bprm->file->f_path.dentry
 * ->d_name) read and compared to one fixed name; SIGKILL on a match.
 *
 * Struct fields are read with bpf_probe_read_kernel at offsets from the
 * running kernel's BTF (the headers bcc compiles against may belong to another
 * kernel), as the enforcer reads them.
 *
 * -DCGROUP_ID=N                the cgroup v2 id (its directory's inode number)
 * -DTARGET_NAME="name"         the basename to kill
 * -DOFF_BPRM_FILE=N ... OFF_QSTR_NAME=N   offsets, as enforcer/kernel/layout.py names them */
#define SIGKILL 9
#define TARGET_LEN (sizeof(TARGET_NAME) - 1)

static __always_inline void *read_ptr(const void *at)
{
    void *value = 0;
    bpf_probe_read_kernel(&value, sizeof(value), at);
    return value;
}

RAW_TRACEPOINT_PROBE(sched_process_exec)
{
    /* TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) */
    if (bpf_get_current_cgroup_id() != CGROUP_ID)
        return 0;
    const char *bprm = (const char *)ctx->args[2];
    const char *file = read_ptr(bprm + OFF_BPRM_FILE);
    if (!file)
        return 0;
    const char *dentry = read_ptr(file + OFF_FILE_PATH + OFF_PATH_DENTRY);
    if (!dentry)
        return 0;
    const char *name = read_ptr(dentry + OFF_DENTRY_NAME + OFF_QSTR_NAME);
    char seen[TARGET_LEN + 1];
    /* The NUL counts: a name of another length cannot match. */
    if (bpf_probe_read_kernel_str(seen, sizeof(seen), name) != sizeof(seen))
        return 0;
#pragma unroll
    for (int i = 0; i < TARGET_LEN; i++) {
        if (seen[i] != TARGET_NAME[i])
            return 0;
    }
    bpf_send_signal(SIGKILL);
    return 0;
}
