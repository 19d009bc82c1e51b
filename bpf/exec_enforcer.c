/* Decides, for every execve and execveat, whether a policy names the program
 * in the caller's cgroup; counts it, reports it and, for kill rules in enforce
 * mode, sends SIGKILL before the new program runs any of its own code.
 *
 * Policies arrive as map contents (enforcer/compiler.py); this file never
 * changes with them. Per exec the work is: one cgroup hash lookup, one LPM
 * lookup for paths and directories, one hash lookup for the basename. Nothing
 * loops over rules or containers, so the cost is flat in their number.
 *
 * A cgroup created while enforcer runs starts out pending (cgroup_mkdir below):
 * an exec there is stopped with SIGSTOP and parked in the held map until the
 * daemon has classified the cgroup and kills or continues it. A new
 * container's entrypoint therefore never runs before its policies apply.
 *
 * Build variants (-D, chosen by enforcer/kernel.py):
 *   BACKEND_LSM       hook the bprm_check_security LSM instead of the syscalls:
 *                     deny rules make execve fail with EPERM. Needs
 *                     BPRM_FILENAME_OFFSET and BPRM_INTERP_OFFSET, taken from
 *                     the running kernel's BTF (enforcer/btf.py)
 *   BACKEND_KPROBE    attach as kprobes on the syscalls instead of tracepoints
 *   USE_PERF_BUFFER   kernels without BPF ring buffers (< 5.8)
 *   PIN_DIR           a bpffs directory (string) to keep the counters, the held
 *                     execs and the liveness array in, shared with the next
 *                     generation of the program (see LIVE_GENERATION)
 *
 * Generations: a program decides execs only while liveness[LIVE_GENERATION]
 * is its own generation. One loaded for a newer generation already follows
 * cgroups (it must not miss one made while it gets ready); an older one does
 * nothing at all until its links are removed.
 */
#include <uapi/linux/ptrace.h>
#include "enforcer.h"

#define SIGKILL 9
#define SIGSTOP 19
#define EPERM 1

/* What the hook does to the exec once every hit is counted and reported. */
#define VERDICT_KILL 1
#define VERDICT_DENY 2

#ifdef BACKEND_LSM
/* The LSM hook finds the path in kernel memory (bprm->filename). */
#define read_exec_path bpf_probe_read_kernel_str
#else
#define read_exec_path bpf_probe_read_user_str
#endif

BPF_HASH(cgroup_sets, u64, struct cgroup_value, MAX_CGROUPS);
BPF_ARRAY(config, struct config_value, 1);
BPF_HASH(rule_names, struct name_key, struct match_value, MAX_NAME_ENTRIES);
BPF_F_TABLE("lpm_trie", struct path_key, struct match_value, rule_paths, MAX_PATH_ENTRIES,
            BPF_F_NO_PREALLOC);
#ifdef PIN_DIR
/* Pinned: the counts outlive the daemon, through restarts and crashes; the
 * next daemon settles the execs held while there was none. */
BPF_TABLE_PINNED("hash", struct counter_key, u64, counters, MAX_COUNTERS, PIN_DIR "/counters");
BPF_TABLE_PINNED("hash", u32, struct held_exec, held, MAX_HELD, PIN_DIR "/held");
BPF_TABLE_PINNED("array", int, u64, liveness, LIVE_SLOTS, PIN_DIR "/liveness");
#else
BPF_HASH(counters, struct counter_key, u64, MAX_COUNTERS);
BPF_HASH(held, u32, struct held_exec, MAX_HELD);
BPF_ARRAY(liveness, u64, LIVE_SLOTS);
#endif
/* Every exec seen, and events the buffer had no room for. */
BPF_PERCPU_ARRAY(exec_total, u64, 1);
BPF_PERCPU_ARRAY(event_drops, u64, 1);
/* bpf_send_signal calls that failed (e.g. -EBUSY), by signal: 0 kill, 1 stop. */
BPF_PERCPU_ARRAY(signal_errors, u64, 2);

/* Per-CPU scratch: the keys are too big for the 512-byte BPF stack. */
struct scratch {
    struct path_key path;
    struct name_key name;
    char long_path[LONG_PATH_LEN];
};
BPF_PERCPU_ARRAY(scratch_space, struct scratch, 1);
BPF_PERCPU_ARRAY(held_space, struct held_exec, 1);

#ifdef USE_PERF_BUFFER
BPF_PERF_OUTPUT(events);
BPF_PERCPU_ARRAY(event_space, struct event, 1);
#else
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
#endif

static __always_inline void bump(void *map_value)
{
    if (map_value)
        __sync_fetch_and_add((u64 *)map_value, 1);
}

static __always_inline void count_hit(u64 cgroup_id, const struct hit *hit)
{
    struct counter_key key = {
        .cgroup_id = cgroup_id,
        .policy_id = hit->policy_id,
        .rule_id = hit->rule_id,
        .target_id = hit->target_id,
        .action = hit->action,
    };
    u64 zero = 0;
    u64 *value = counters.lookup_or_try_init(&key, &zero);
    bump(value);
}

typedef const char __user *const __user *argv_t;

#ifdef BACKEND_LSM
/* The LSM hook has no argv of its own: it passes ARGV_OF_SYSCALL, and the
 * argv the execve or execveat syscall was given is read only when an event
 * is sent, from the registers the syscall entry saved (struct pt_regs is the
 * x86-64 ABI's layout, the same in every kernel's headers). */
#define ARGV_OF_SYSCALL ((argv_t)1)
#define NR_EXECVE 59
#define NR_EXECVEAT 322

static __always_inline argv_t syscall_argv(void)
{
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
    u64 nr = 0, argv = 0;
    bpf_probe_read_kernel(&nr, sizeof(nr), &regs->orig_ax);
    if (nr == NR_EXECVE)
        bpf_probe_read_kernel(&argv, sizeof(argv), &regs->si);
    else if (nr == NR_EXECVEAT)
        bpf_probe_read_kernel(&argv, sizeof(argv), &regs->dx);
    return (argv_t)argv;
}
#endif

/* The first arguments of the exec, for the event a person reads. */
static __always_inline void copy_args(struct event *event, argv_t argv)
{
    event->argc = 0;
#ifdef BACKEND_LSM
    if (argv == ARGV_OF_SYSCALL)
        argv = syscall_argv();
#endif
    if (!argv)
        return;
#pragma unroll
    for (int i = 0; i < MAX_ARGS; i++) {
        const char __user *arg = 0;
        if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) != 0 || !arg)
            break;
        bpf_probe_read_user_str(&event->args[i * ARG_LEN], ARG_LEN, arg);
        event->argc = i + 1;
    }
}

static __always_inline void submit(void *ctx, u64 cgroup_id, u32 kind,
                                   const struct hit *hit, const char *path, argv_t argv)
{
    int zero = 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
#ifdef USE_PERF_BUFFER
    struct event *event = event_space.lookup(&zero);
#else
    struct event *event = events.ringbuf_reserve(sizeof(struct event));
#endif
    if (!event) {
        bump(event_drops.lookup(&zero));
        return;
    }
    event->timestamp_ns = bpf_ktime_get_boot_ns();
    event->cgroup_id = cgroup_id;
    event->pid = pid_tgid >> 32;
    event->tid = (u32)pid_tgid;
    event->uid = (u32)bpf_get_current_uid_gid();
    event->kind = kind;
    event->policy_id = hit ? hit->policy_id : 0;
    event->rule_id = hit ? hit->rule_id : 0;
    event->target_id = hit ? hit->target_id : 0;
    event->action = hit ? hit->action : 0;
    bpf_get_current_comm(event->comm, sizeof(event->comm));
    bpf_probe_read_kernel_str(event->filename, sizeof(event->filename), path);
    copy_args(event, argv);
#ifdef USE_PERF_BUFFER
    if (events.perf_submit(ctx, event, sizeof(*event)) != 0)
        bump(event_drops.lookup(&zero));
#else
    events.ringbuf_submit(event, 0);
#endif
}

/* Whether the path lookup already counted this exec for the hit's rule: a rule
 * naming both the basename and the directory counts the exec once. */
static __always_inline int counted_by(const struct match_value *earlier, const struct hit *hit)
{
    if (!earlier)
        return 0;
#pragma unroll
    for (int i = 0; i < MAX_HITS; i++) {
        if (i >= earlier->count)
            break;
        if (earlier->hits[i].policy_id == hit->policy_id && earlier->hits[i].rule_id == hit->rule_id)
            return 1;
    }
    return 0;
}

/* The verdict one hit asks for, and (for the counters and events) the action
 * taken: only an LSM hook can make an exec fail, so elsewhere deny kills. */
static __always_inline int take_action(struct hit *hit)
{
#ifndef BACKEND_LSM
    if (hit->action == ACTION_DENY)
        hit->action = ACTION_KILL;
#endif
    if (hit->action == ACTION_KILL)
        return VERDICT_KILL;
    if (hit->action == ACTION_DENY)
        return VERDICT_DENY;
    return 0;
}

/* Counts and reports every hit of one lookup not already seen in `earlier`;
 * returns the VERDICT_ bits they ask for. */
static __always_inline int apply_hits(void *ctx, u64 cgroup_id, const struct match_value *match,
                                      const struct match_value *earlier, const char *path,
                                      argv_t argv)
{
    int verdict = 0;
#pragma unroll
    for (int i = 0; i < MAX_HITS; i++) {
        if (i >= match->count)
            break;
        struct hit hit = match->hits[i];
        verdict |= take_action(&hit);
        if (counted_by(earlier, &hit))
            continue;
        count_hit(cgroup_id, &hit);
        submit(ctx, cgroup_id, EVENT_MATCH, &hit, path, argv);
    }
    return verdict;
}

/* Keeps clang from dropping a bounds mask the verifier needs to see. */
#define barrier_var(v) asm volatile("" : "+r"(v))

/* Copies the basename of src[0..len) (len counts the NUL) into the zeroed name
 * key. Returns 0 when it is longer than any policy name can be: no lookup.
 * Indexes are masked with `mask` (a power of two less one, never reaching past
 * the scratch value) so the verifier can see every access is in bounds. */
static __always_inline int take_basename(struct scratch *s, const char *src, u32 len, u32 mask)
{
    u32 start = 0;
    int found = 0;
#pragma unroll
    for (u32 i = 1; i <= NAME_LEN; i++) {
        /* Walk back from the end: a basename that fits NAME_LEN ends within it. */
        if (i >= len) {
            found = 1;
            break;
        }
        u32 at = len - 1 - i;
        barrier_var(at);
        at &= mask;
        if (src[at] == '/') {
            start = at + 1;
            found = 1;
            break;
        }
    }
    if (!found)
        return 0;
    barrier_var(start);
    start &= mask;
    __builtin_memset(s->name.name, 0, NAME_LEN);
    bpf_probe_read_kernel_str(s->name.name, NAME_LEN, &src[start]);
    return 1;
}

/* The basename lookup key, from the copy in the path key or, when the path was
 * too long for it, from a second, full-length copy. */
static __always_inline int name_key_for(struct scratch *s, const char __user *filename, int len)
{
    if (len < PATH_LEN)
        return take_basename(s, s->path.path, len, 255);
    int full = read_exec_path(s->long_path, LONG_PATH_LEN, filename);
    if (full <= 0)
        return 0;
    return take_basename(s, s->long_path, full, LONG_PATH_LEN - 1);
}

/* Stops the caller and parks its exec for userspace to decide. If the held
 * map is full the exec is stopped all the same: userspace finds it by pid
 * from the event and, failing that, on its next sweep. */
static __always_inline void hold(void *ctx, u64 cgroup_id, struct scratch *s,
                                 const char __user *filename, int len)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    int zero = 0;
    struct held_exec *slot = held_space.lookup(&zero);
    if (!slot)
        return;
    slot->cgroup_id = cgroup_id;
    bpf_probe_read_kernel_str(slot->filename, PATH_LEN, s->path.path);
    __builtin_memset(slot->name, 0, NAME_LEN);
    if (name_key_for(s, filename, len))
        bpf_probe_read_kernel_str(slot->name, NAME_LEN, s->name.name);
    held.update(&tgid, slot);
    /* To this thread, not the thread group: in a multi-threaded caller (a Go
     * runtime such as runc init) another thread could take a group-wide
     * SIGSTOP, and the exec's de_thread() cancels a group stop under way. */
    if (bpf_send_signal_thread(SIGSTOP) != 0) {
        int stop = 1;
        bump(signal_errors.lookup(&stop));
    }
    submit(ctx, cgroup_id, EVENT_HELD, 0, s->path.path, 0);
}

/* Which generation decides execs now. */
static __always_inline u64 live_generation(void)
{
    int slot = LIVE_GENERATION;
    u64 *generation = liveness.lookup(&slot);
    return generation ? *generation : 0;
}

/* Whether a daemon was alive recently enough to settle a held exec: without
 * one, a new container's execs would stay stopped. */
static __always_inline int daemon_alive(void)
{
    int slot = LIVE_HOLD_UNTIL;
    u64 *until = liveness.lookup(&slot);
    return until && bpf_ktime_get_ns() < *until;
}

static __always_inline u32 set_for_current(u64 cgroup_id, const struct config_value *cfg)
{
    struct cgroup_value *selected = cgroup_sets.lookup(&cgroup_id);
    if (selected)
        return selected->set_id;
    return cfg->host_set_id;
}

/* Decides one exec; returns the VERDICT_ bits, having already sent SIGKILL
 * for VERDICT_KILL (only an LSM hook can act on VERDICT_DENY). */
static __always_inline int on_exec(void *ctx, const char __user *filename, argv_t argv)
{
    int zero = 0;
    struct config_value *cfg = config.lookup(&zero);
    struct scratch *s = scratch_space.lookup(&zero);
    if (!cfg || !s || cfg->generation != live_generation())
        return 0;
    bump(exec_total.lookup(&zero));
    u64 cgroup_id = bpf_get_current_cgroup_id();
    u32 set_id = set_for_current(cgroup_id, cfg);
    if (set_id == 0 && !cfg->trace_all)
        return 0;

    int len = read_exec_path(s->path.path, PATH_LEN, filename);
    if (len <= 0)
        return 0;
    if (set_id == SET_PENDING) {
        if (daemon_alive()) {
            hold(ctx, cgroup_id, s, filename, len);
        } else {
            int unheld = LIVE_UNHELD;
            bump(liveness.lookup(&unheld));
        }
        return 0;
    }
    int verdict = 0, matched = 0;
    if (set_id != 0) {
        s->path.prefixlen = 32 + PATH_LEN * 8;
        s->path.set_id = set_id;
        struct match_value *by_path = rule_paths.lookup(&s->path);
        struct match_value *by_name = 0;
        if (by_path) {
            matched = 1;
            verdict |= apply_hits(ctx, cgroup_id, by_path, 0, s->path.path, argv);
        }
        if (name_key_for(s, filename, len)) {
            s->name.set_id = set_id;
            by_name = rule_names.lookup(&s->name);
            if (by_name) {
                matched = 1;
                verdict |= apply_hits(ctx, cgroup_id, by_name, by_path, s->path.path, argv);
            }
        }
    }
    if (cfg->trace_all && !matched)
        submit(ctx, cgroup_id, EVENT_EXEC, 0, s->path.path, argv);
    if ((verdict & VERDICT_KILL) && bpf_send_signal(SIGKILL) != 0)
        bump(signal_errors.lookup(&zero));
    return verdict;
}

/* cgroup v2 lifecycle: both creation and removal are reported; while the
 * daemon asks for it (hold_new) a new cgroup starts pending, and a removed one
 * always leaves the cgroup map.
 * These live here, not in a file of their own, because bcc generates the
 * tracepoint argument structs only for probes in the main source file. */
/* The tracepoints report cgroup v1 hierarchies too; v2 is hierarchy 0. */
#define CGROUP2_HIERARCHY 0

TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
    int zero = 0;
    struct config_value *cfg = config.lookup(&zero);
    if (args->root != CGROUP2_HIERARCHY || !cfg || cfg->generation < live_generation())
        return 0;
    u64 cgroup_id = args->id;
    if (cfg->hold_new && daemon_alive()) {
        struct cgroup_value pending = {.set_id = SET_PENDING};
        /* BPF_NOEXIST: an entry userspace already wrote wins. */
        cgroup_sets.insert(&cgroup_id, &pending);
    }
    submit(args, cgroup_id, EVENT_CGROUP_NEW, 0,
           (const char *)args + (args->data_loc_path & 0xFFFF), 0);
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_rmdir)
{
    int zero = 0;
    struct config_value *cfg = config.lookup(&zero);
    if (args->root != CGROUP2_HIERARCHY || !cfg || cfg->generation < live_generation())
        return 0;
    u64 cgroup_id = args->id;
    cgroup_sets.delete(&cgroup_id);
    submit(args, cgroup_id, EVENT_CGROUP_GONE, 0,
           (const char *)args + (args->data_loc_path & 0xFFFF), 0);
    return 0;
}

#if defined(BACKEND_LSM)
struct linux_binprm;

/* Runs once per binary handler pass, before the point of no return: the new
 * program is not loaded yet, and a non-zero return makes execve fail with it.
 * bprm->filename is the path as passed to execve (execveat: /dev/fd/N/path).
 * Both fields are read at offsets from the running kernel's BTF, never through
 * headers that may belong to another kernel. */
LSM_PROBE(bprm_check_security, struct linux_binprm *bprm)
{
    const char *filename = 0, *interp = 0;
    bpf_probe_read_kernel(&filename, sizeof(filename), (char *)bprm + BPRM_FILENAME_OFFSET);
    bpf_probe_read_kernel(&interp, sizeof(interp), (char *)bprm + BPRM_INTERP_OFFSET);
    /* A #! script or binfmt_misc passes again for its interpreter, by then with
     * interp set apart from filename: the syscall hooks see one exec, so do we. */
    if (!filename || interp != filename)
        return 0;
    int verdict = on_exec(ctx, (const char __user *)filename, ARGV_OF_SYSCALL);
    return verdict ? -EPERM : 0;
}
#elif defined(BACKEND_KPROBE)
int syscall__execve(struct pt_regs *ctx, const char __user *filename, argv_t argv)
{
    on_exec(ctx, filename, argv);
    return 0;
}

int syscall__execveat(struct pt_regs *ctx, int dirfd, const char __user *filename, argv_t argv)
{
    on_exec(ctx, filename, argv);
    return 0;
}
#else
TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    on_exec(args, (const char __user *)args->filename, (argv_t)args->argv);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
    on_exec(args, (const char __user *)args->filename, (argv_t)args->argv);
    return 0;
}
#endif
