// SPDX-License-Identifier: GPL-2.0-only
/* Decides, for every exec that succeeds, whether a policy names the program
 * it runs in the caller's cgroup; counts it, reports it and, for kill rules in
 * enforce mode, sends SIGKILL before the new program runs any of its own code.
 *
 * The decision is on the file that runs, read from kernel memory
 * (file_identity.h), never on the string the caller passed: its resolved path
 * (exact paths and directories, one LPM lookup), its inode (the files policy
 * paths resolved to: hardlinks and renames), its basename and the basename it
 * was invoked by (two hash lookups). Nothing loops over rules or containers,
 * so the cost is flat in their number. Policies arrive as map contents
 * (enforcer/enforce/compiler.py); this file never changes with them.
 *
 * Hooks:
 *   sched_process_exec (raw tracepoint, every backend): fires once the exec
 *     has succeeded and before the return to user mode, with the final file
 *     in bprm->file. A failed exec (ENOENT, EACCES, ENOEXEC) never gets here,
 *     so it is neither counted nor killed. It is no syscall tracepoint: other
 *     system calls pay nothing for it.
 *   a pass hook (BACKEND_LSM: the bprm_check_security LSM; BACKEND_KPROBE: a
 *     kprobe on security_bprm_check): runs once per binfmt pass, before the
 *     point of no return, with that pass's file: the script, then its
 *     interpreter. It collects each pass's hits per thread (pass_hits) for
 *     sched_process_exec to count; on lsm a deny hit fails execve with EPERM
 *     there and then. Without a pass hook (the tracepoint backend) a script's
 *     own file is gone by sched_process_exec: its invoked name is looked up,
 *     and where the set has enforce-mode path rules (SET_HOLD_SCRIPTS) the
 *     exec is held for the daemon to resolve the script's path.
 *
 * A cgroup created while enforcer runs starts out pending (cgroup_mkdir below):
 * an exec there is stopped with SIGSTOP and parked in the held map until the
 * daemon has classified the cgroup and kills or continues it. A new
 * container's entrypoint therefore never runs before its policies apply.
 *
 * Rule conditions (match.calledBy, match.args; enforcer/enforce/conditions.py): the
 * calling program is the caller's mm->exe_file, read before the new image
 * replaces it, in the pass hook or, on the tracepoint backend, in
 * sched_prepare_exec (Linux 6.10+), and kept per thread (callers) until
 * sched_process_exec. Its file is looked up once (basename, inode, path), as
 * each of the first MATCH_ARGS arguments is, in sched_process_exec and only
 * when a hit with an args condition was found: the lookups return the bits of
 * the conditions they satisfy, and each hit tests its own.
 *
 * Build variants (-D, chosen by enforcer/kernel/backends.py):
 *   BACKEND_LSM, BACKEND_KPROBE  the pass hook, as above
 *   HAS_PREPARE_EXEC  the tracepoint backend reads callers in sched_prepare_exec
 *   OFF_*             struct offsets from the running kernel's BTF
 *   USE_PERF_BUFFER   kernels without BPF ring buffers (< 5.8)
 * Nothing else varies: the compiled program is cached by these (bpf_object.py).
 *
 * Generations: a program decides execs only while liveness[LIVE_GENERATION]
 * is its own generation. One loaded for a newer generation already follows
 * cgroups (it must not miss one made while it gets ready); an older one does
 * nothing at all until its links are removed.
 */
#include <uapi/linux/ptrace.h>
#include "enforcer.h"
#include "file_identity.h"

#define SIGKILL 9
#define SIGSTOP 19
#define EPERM 1
#define EEXIST 17

/* What the hook does to the exec once every hit is counted and reported. */
#define VERDICT_KILL 1
#define VERDICT_DENY 2

#if defined(BACKEND_LSM) || defined(BACKEND_KPROBE)
#define HAS_PASS_HOOK 1
#endif
#if defined(HAS_PASS_HOOK) || defined(HAS_PREPARE_EXEC)
#define READS_CALLERS 1
#endif

BPF_HASH(cgroup_sets, u64, struct cgroup_value, MAX_CGROUPS);
BPF_ARRAY(config, struct config_value, 1);
BPF_HASH(rule_names, struct name_key, struct match_value, MAX_NAME_ENTRIES);
BPF_F_TABLE("lpm_trie", struct path_key, struct match_value, rule_paths, MAX_PATH_ENTRIES,
            BPF_F_NO_PREALLOC);
BPF_HASH(rule_inodes, struct inode_key, struct match_value, MAX_PATH_ENTRIES);
/* set id -> the hits of every path and dir rule of the set: what a cut path
 * matches (fail closed). */
BPF_HASH(cut_hits, u32, struct match_value, MAX_CGROUPS);
/* set id -> the defaults of its policies (SET_DEFAULTS) */
BPF_HASH(set_defaults, u32, struct set_defaults, MAX_CGROUPS);
#ifdef HAS_PASS_HOOK
/* thread id -> the hits of the exec it is in the middle of */
BPF_TABLE("lru_hash", u32, struct exec_hits, pass_hits, MAX_HELD);
#endif
/* The conditions' lookups: calledBy's files (struct caller_entry), args. */
BPF_F_TABLE("hash", struct name_key, struct caller_entry, caller_names, MAX_CALLER_ENTRIES,
            BPF_F_NO_PREALLOC);
BPF_F_TABLE("lpm_trie", struct path_key, struct caller_entry, caller_paths, MAX_CALLER_ENTRIES,
            BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct inode_key, struct caller_entry, caller_inodes, MAX_CALLER_ENTRIES,
            BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", struct arg_key, struct condition_mask, arg_values, MAX_ARG_ENTRIES,
            BPF_F_NO_PREALLOC);
/* thread id -> the program calling the exec it is in the middle of */
BPF_TABLE("lru_hash", u32, struct caller_info, callers, MAX_HELD);
/* Pinned by the loader (bpf_object.PINNED_MAPS): the counts outlive the
 * daemon, through restarts and crashes; the next daemon settles the execs
 * held while there was none; every generation reads the same liveness. */
BPF_HASH(counters, struct counter_key, u64, MAX_COUNTERS);
BPF_HASH(held, u32, struct held_exec, MAX_HELD);
BPF_ARRAY(liveness, u64, LIVE_SLOTS);
BPF_PERCPU_ARRAY(last_counted, struct counted_exec, 1);
/* Every exec seen, and events the buffer had no room for. */
BPF_PERCPU_ARRAY(exec_total, u64, 1);
BPF_PERCPU_ARRAY(event_drops, u64, 1);
/* bpf_send_signal calls that failed (e.g. -EBUSY), by signal: 0 kill, 1 stop. */
BPF_PERCPU_ARRAY(signal_errors, u64, 2);
/* Writes that found their map full, by FULL_* slot. Not per CPU: an exec
 * in a cgroup with no entry reads FULL_CGROUPS, whichever CPU counted it. */
BPF_ARRAY(full_maps, u64, FULL_SLOTS);

#define SEEN_BYTES 8192
_Static_assert(IS_POWER_OF_TWO(SEEN_BYTES), "SEEN_BYTES is used as a mask");

/* Per-CPU scratch: the keys and the walk are too big for the 512-byte stack. */
struct scratch {
    struct path_key path;
    struct name_key name;
    struct inode_key inode;
    struct exec_hits acc;
    struct file_facts file;
    struct walk_state walk;
    u32 walked;            /* path.path holds the file's resolved path */
    char text[LONG_PATH_LEN];
    u64 name_lengths;      /* the caller's set's (cgroup_value.name_lengths) */
    u32 key_is_file_name;  /* name.name holds the file's own name (match_file) */
    struct caller_info caller;  /* the program calling this exec (CALLER_KNOWN) */
    u64 caller_bits;       /* the set's calledBy conditions it satisfies */
    u16 caller_id;         /* the most specific calledBy entry naming it (counters) */
    u64 args_bits;         /* the set's args conditions the arguments satisfy */
    u32 late;              /* deciding in sched_process_exec: a deny can only kill */
    struct arg_key arg;
    u8 seen[SEEN_BYTES];   /* one bit per rule id, see add_hit */
};
BPF_PERCPU_ARRAY(scratch_space, struct scratch, 1);
BPF_PERCPU_ARRAY(held_space, struct held_exec, 1);

/* The event buffer: a ring buffer, or a perf buffer before Linux 5.8. The
 * choice stays in this file, not in a compat header as libbpf-tools keeps
 * it: bcc rewrites map method calls (events.ringbuf_reserve) only in the
 * main source file, and a header's are refused at load (EINVAL). */
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

static __always_inline void count_hit(u64 cgroup_id, const struct hit *hit, u16 caller_id)
{
    struct counter_key key = {
        .cgroup_id = cgroup_id,
        .policy_id = hit->policy_id,
        .rule_id = hit->rule_id,
        .target_id = hit->target_id,
        .action = hit->action,
        .caller_id = hit->caller ? caller_id : 0,
    };
    u64 zero = 0;
    u64 *value = counters.lookup_or_try_init(&key, &zero);
    if (value) {
        bump(value);
    } else {
        int slot = FULL_COUNTERS;
        bump(full_maps.lookup(&slot));
    }
}

/* The verdict one hit asks for, and (for the counters and events) the action
 * taken: only an LSM hook can make an exec fail, so elsewhere deny kills. */
static __always_inline u32 take_action(struct hit *hit)
{
#ifndef BACKEND_LSM
    if (hit->action == ACTION_DENY)
        hit->action = ACTION_KILL;
#endif
    if (hit->action == ACTION_KILL)
        return VERDICT_KILL;
    /* ACTION_ALLOW and ACTION_AUDIT do nothing to the exec. */
    if (hit->action == ACTION_DENY)
        return VERDICT_DENY;
    return 0;
}

/* Rule ids are unique across policies (a u16 each): one bit per rule says
 * whether this exec has counted it already (scratch.seen), so no hit list is
 * searched. Only the bits of the exec's own hits are ever set, and
 * mark_hits(s, 0) clears them when the exec is decided. */

static __always_inline u8 *seen_byte(struct scratch *s, u16 rule_id)
{
    u32 at = rule_id >> 3;
    barrier_var(at);
    return &s->seen[at & (SEEN_BYTES - 1)];
}

/* Whether a hit's calledBy condition holds. A caller that could not be read
 * whole (CALLER_KNOWN unset, or its path cut) fails closed: it satisfies the
 * conditions of hits that act, and those of allow hits not. */
static __always_inline int caller_holds(const struct scratch *s, const struct hit *h)
{
    if (!h->caller)
        return 1;
    if ((s->caller.flags & (CALLER_KNOWN | CALLER_PATH_CUT)) != CALLER_KNOWN)
        return h->action != ACTION_ALLOW;
    return (s->caller_bits >> ((h->caller - 1) & (MAX_CONDITIONS - 1))) & 1;
}

/* Parks a hit with an args condition until the arguments are read (see
 * decide_deferred); past MAX_DEFERRED it fails closed, as caller_holds does. */
static __always_inline int defer_hit(struct scratch *s, const struct hit *h)
{
    u32 at = s->acc.deferred_count;
    if (at >= MAX_DEFERRED)
        return h->action != ACTION_ALLOW;
    s->acc.deferred[at & (MAX_DEFERRED - 1)] = *h;
    s->acc.deferred_count = at + 1;
    s->acc.deferred_named |= h->named;
    return 0;
}

/* Adds one hit to the exec's, once per (policy, rule). Past MAX_EXEC_HITS a
 * hit still decides the verdict; it is only not counted. A hit whose
 * conditions do not hold is no hit; one with an args condition waits. */
static __always_inline void add_hit(struct scratch *s, const struct hit *hit)
{
    struct hit h = *hit;
    if (!caller_holds(s, &h))
        return;
    if (h.args) {
        if (defer_hit(s, &h))
            h.args = 0;
        else
            return;
    }
    if (s->late && h.action == ACTION_DENY)
        h.action = ACTION_KILL;
    s->acc.named |= h.named;
    s->acc.verdict |= take_action(&h);
    u8 *byte = seen_byte(s, h.rule_id);
    u8 bit = 1 << (h.rule_id & 7);
    u32 count = s->acc.count;
    if ((*byte & bit) || count >= MAX_EXEC_HITS)
        return;
    *byte |= bit;
    s->acc.hits[count & (MAX_EXEC_HITS - 1)] = h;
    s->acc.count = count + 1;
}

static __always_inline void add_hits(struct scratch *s, const struct match_value *match)
{
    if (!match)
        return;
    s->acc.named |= match->named;
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < MAX_HITS; i++) {
        if (i >= match->count)
            break;
        u32 at = i;
        barrier_var(at);
        add_hit(s, &match->hits[at & (MAX_HITS - 1)]);
    }
}

/* Sets (an earlier pass's hits taken back) or clears the seen bits of s->acc. */
static __always_inline void mark_hits(struct scratch *s, int seen)
{
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < MAX_EXEC_HITS; i++) {
        if (i >= s->acc.count)
            break;
        u32 at = i;
        barrier_var(at);
        u16 rule_id = s->acc.hits[at & (MAX_EXEC_HITS - 1)].rule_id;
        u8 *byte = seen_byte(s, rule_id);
        u8 bit = 1 << (rule_id & 7);
        if (seen)
            *byte |= bit;
        else
            *byte &= ~bit;
    }
}

/* The basename lookup: `name` is copied into the zeroed name key (returns 1
 * once it is there). A name longer than any policy name can be is not. */
static __always_inline int lookup_name(struct scratch *s, u32 set_id, const char *name, u32 len)
{
    s->key_is_file_name = 0;
    if (!name || len == 0 || len >= NAME_LEN)
        return 0;
    __builtin_memset(s->name.name, 0, NAME_LEN);
    barrier_var(len);
    if (bpf_probe_read_kernel(s->name.name, len & (NAME_LEN - 1), name) != 0)
        return 0;
    s->name.set_id = set_id;
    /* No policy name of the set is that long: no entry can match. */
    if (s->name_lengths & (1ULL << len))
        add_hits(s, rule_names.lookup(&s->name));
    return 1;
}

/* The last component of a kernel string (bprm->filename, bprm->interp), looked
 * up as a basename: the name a program was invoked by, as with a
 * `whoami -> busybox` symlink. */
static __always_inline void lookup_invoked_name(struct scratch *s, u32 set_id, const char *path)
{
    if (!path)
        return;
    int len = bpf_probe_read_kernel_str(s->text, LONG_PATH_LEN, path);
    if (len <= 1)
        return;
    u32 end = (u32)len - 1;   /* the NUL */
    u32 start = 0;
    int found = 0;
#pragma clang loop unroll(disable)
    for (u32 i = 1; i <= NAME_LEN; i++) {
        if (i > end) {
            found = 1;
            break;
        }
        u32 at = end - i;
        barrier_var(at);
        at &= LONG_PATH_LEN - 1;
        if (s->text[at] == '/') {
            start = at + 1;
            found = 1;
            break;
        }
    }
    if (!found)
        return;
    barrier_var(start);
    start &= LONG_PATH_LEN - 1;
    lookup_name(s, set_id, &s->text[start], end - start);
}

/* After an exec (not a script's), comm is the basename the program was
 * invoked by, cut to COMM_LEN - 1 bytes (begin_new_exec sets it), and
 * bpf_get_current_comm leaves it zero-padded. Where its last byte is free it
 * is the whole invoked name: compared with the file's own name in the key
 * (no symlink: nothing more to look up) and else looked up as it is, with no
 * read of the path. Returns 0 when comm may have been cut. */
static __always_inline int lookup_comm_name(struct scratch *s, u32 set_id)
{
    u64 comm[2] = {};
    bpf_get_current_comm(comm, sizeof(comm));
    if (comm[1] >> 56)
        return 0;   /* 15 bytes: maybe cut */
    const u64 *key = (const u64 *)s->name.name;
    if (s->key_is_file_name && comm[0] == key[0] && comm[1] == key[1] && key[2] == 0)
        return 1;
    if (!(s->name_lengths & ~1ULL))
        return 1;   /* the set names nothing */
    __builtin_memset(s->name.name, 0, NAME_LEN);
    __builtin_memcpy(s->name.name, comm, sizeof(comm));
    s->name.set_id = set_id;
    s->key_is_file_name = 0;
    add_hits(s, rule_names.lookup(&s->name));
    return 1;
}

/* Resolves the path of s->file into s->path.path, once per exec; returns 0, or
 * -1 when the walk was cut (the path then holds what the walk reached). */
static __always_inline int resolve_path(struct scratch *s)
{
    if (s->walked)
        return (s->acc.flags & EXEC_PATH_CUT) ? -1 : 0;
    s->walked = 1;
    struct kpath root = {};
    task_fs_path(&root, OFF_FS_ROOT);
    int cut = walk_path(&s->walk, &s->file.path, &root);
    bpf_probe_read_kernel_str(s->path.path, PATH_LEN, &s->walk.buf[s->walk.pos & (WALK_BUF - 1)]);
    if (cut)
        s->acc.flags |= EXEC_PATH_CUT;
    return cut;
}

/* Every hit of the file in s->file (and, for a script without a pass hook,
 * of the name it was invoked by) goes into s->acc. */
static __always_inline void match_file(struct scratch *s, u32 set_id, u32 flags,
                                       const char *interp, int by_comm)
{
    if (flags & SET_NAMES) {
        s->key_is_file_name = lookup_name(s, set_id, s->file.name, s->file.name_len);
        if (!(by_comm && lookup_comm_name(s, set_id)))
            lookup_invoked_name(s, set_id, interp);
    }
    if (flags & SET_INODES) {
        read_inode_facts(&s->file);
        s->inode.set_id = set_id;
        s->inode.dev = s->file.dev;
        s->inode.ino = s->file.ino;
        add_hits(s, rule_inodes.lookup(&s->inode));
    }
    if (flags & SET_PATHS) {
        if (resolve_path(s) == 0) {
            s->path.prefixlen = 32 + PATH_LEN * 8;
            s->path.set_id = set_id;
            add_hits(s, rule_paths.lookup(&s->path));
        } else {
            add_hits(s, cut_hits.lookup(&set_id));
        }
    }
}

/* bprm->file, bprm->filename and bprm->interp, in one read where they lie
 * close together (BPRM_BLOCK_*, from enforcer/kernel/layout.py). */
struct bprm_fields {
    const void *file;
    const char *filename;
    const char *interp;
};

static __always_inline void read_bprm(struct bprm_fields *out, const void *bprm)
{
#ifdef BPRM_BLOCK_LEN
    u64 block[BPRM_BLOCK_LEN / 8] = {};
    bpf_probe_read_kernel(block, sizeof(block), (const char *)bprm + BPRM_BLOCK_START);
    out->file = (const void *)block[(OFF_BPRM_FILE - BPRM_BLOCK_START) / 8];
    out->filename = (const char *)block[(OFF_BPRM_FILENAME - BPRM_BLOCK_START) / 8];
    out->interp = (const char *)block[(OFF_BPRM_INTERP - BPRM_BLOCK_START) / 8];
#else
    out->file = read_ptr((const char *)bprm + OFF_BPRM_FILE);
    out->filename = read_ptr((const char *)bprm + OFF_BPRM_FILENAME);
    out->interp = read_ptr((const char *)bprm + OFF_BPRM_INTERP);
#endif
}

/* Reads one binfmt pass's file into s->file; a file that cannot be read at
 * all matches as a cut path (fail closed). */
static __always_inline int read_exec_file(struct scratch *s, const void *file)
{
    s->walked = 0;
    if (read_file_facts(&s->file, file) == 0)
        return 0;
    s->acc.flags |= EXEC_FILE_UNREAD | EXEC_PATH_CUT;
    s->walked = 1;
    s->path.path[0] = 0;
    s->file.name = 0;
    s->file.name_len = 0;
    s->file.inode = 0;
    return -1;
}

static __always_inline void reset_hits(struct exec_hits *acc, u32 set_id)
{
    acc->set_id = set_id;
    acc->count = 0;
    acc->verdict = 0;
    acc->flags = 0;
    acc->named = 0;
    acc->deferred_count = 0;
    acc->deferred_named = 0;
}

/* Reads the program calling this exec, current's mm->exe_file (the image the
 * exec replaces: only a pass hook or sched_prepare_exec still sees it), into
 * s->caller: its inode, its basename and its path in the caller's root. */
static __always_inline u64 current_exec_id(void)
{
    u64 exec_id = 0;
    bpf_probe_read_kernel(&exec_id, sizeof(exec_id),
                          (const char *)bpf_get_current_task() + OFF_TASK_SELF_EXEC_ID);
    return exec_id;
}

static __always_inline void read_caller(struct scratch *s, const void *bprm)
{
    struct caller_info *c = &s->caller;
    const char *task = (const char *)bpf_get_current_task();
    c->bprm = (u64)bprm;
    /* begin_new_exec counts the exec after sched_prepare_exec and the passes */
    c->exec_id = current_exec_id() + 1;
    c->flags = 0;
    c->ino = 0;
    c->dev = 0;
    c->path[0] = 0;
    __builtin_memset(c->name, 0, NAME_LEN);
    const char *mm = read_ptr(task + OFF_TASK_MM);
    const void *exe = mm ? read_ptr(mm + OFF_MM_EXE_FILE) : 0;
    if (read_file_facts(&s->file, exe) != 0)
        return;
    read_inode_facts(&s->file);
    c->ino = s->file.ino;
    c->dev = s->file.dev;
    u32 len = s->file.name_len;
    if (len < NAME_LEN) {
        barrier_var(len);
        bpf_probe_read_kernel(c->name, len & (NAME_LEN - 1), s->file.name);
    }
    struct kpath root = {};
    task_fs_path(&root, OFF_FS_ROOT);
    if (walk_path(&s->walk, &s->file.path, &root) != 0)
        c->flags |= CALLER_PATH_CUT;
    bpf_probe_read_kernel_str(c->path, PATH_LEN, &s->walk.buf[s->walk.pos & (WALK_BUF - 1)]);
    c->flags |= CALLER_KNOWN;
}

static __always_inline u64 mask_of(const struct condition_mask *found)
{
    return found ? found->bits : 0;
}

static __always_inline void caller_found(struct scratch *s, const struct caller_entry *found)
{
    if (!found)
        return;
    s->caller_bits |= found->bits;
    if (!s->caller_id)
        s->caller_id = found->caller_id;
}

/* The set's calledBy conditions that s->caller satisfies: one lookup each of
 * its inode, its path (the longest directory entry) and its basename, the
 * most specific first, whose entry is the one counters name. */
static __always_inline void match_caller(struct scratch *s, u32 set_id)
{
    s->caller_bits = 0;
    s->caller_id = 0;
    if (!(s->caller.flags & CALLER_KNOWN))
        return;
    s->inode.set_id = set_id;
    s->inode.dev = s->caller.dev;
    s->inode.ino = s->caller.ino;
    caller_found(s, caller_inodes.lookup(&s->inode));
    bpf_probe_read_kernel_str(s->path.path, PATH_LEN, s->caller.path);
    s->path.prefixlen = 32 + PATH_LEN * 8;
    s->path.set_id = set_id;
    caller_found(s, caller_paths.lookup(&s->path));
    __builtin_memcpy(s->name.name, s->caller.name, NAME_LEN);
    s->name.set_id = set_id;
    caller_found(s, caller_names.lookup(&s->name));
}

/* The caller of this exec as the pass hook or sched_prepare_exec kept it, if
 * it was kept for this very exec; else it stays unknown. */
static __always_inline void take_caller(struct scratch *s, const void *bprm, u32 old_pid)
{
    s->caller.flags = 0;
    s->caller.path[0] = 0;
#ifdef READS_CALLERS
    struct caller_info *kept = callers.lookup(&old_pid);
    if (!kept)
        return;
    if (kept->bprm == (u64)bprm && kept->exec_id == current_exec_id())
        s->caller = *kept;
    callers.delete(&old_pid);
#endif
}

#ifdef READS_CALLERS
/* Before the point of no return (a pass, sched_prepare_exec): the caller of
 * this exec into s->caller, read once and kept for the passes after and for
 * sched_process_exec. */
static __always_inline void keep_caller(struct scratch *s, const void *bprm)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct caller_info *kept = callers.lookup(&tid);
    if (kept && kept->bprm == (u64)bprm && kept->exec_id == current_exec_id() + 1) {
        s->caller = *kept;
        return;
    }
    read_caller(s, bprm);
    callers.update(&tid, &s->caller);
}
#endif

/* Whether the caller still runs in the host's mount namespace. */
static __always_inline int in_host_mount_ns(u32 host_mnt_ns)
{
    const char *task = (const char *)bpf_get_current_task();
    const char *nsproxy = read_ptr(task + OFF_TASK_NSPROXY);
    const char *mnt_ns = nsproxy ? read_ptr(nsproxy + OFF_NSPROXY_MNT_NS) : 0;
    u32 inum = 0;
    if (mnt_ns)
        bpf_probe_read_kernel(&inum, sizeof(inum), mnt_ns + OFF_MNT_NS_NS + OFF_NS_COMMON_INUM);
    return inum != 0 && inum == host_mnt_ns;
}

/* The default of each policy of the set that no entry the exec matched names
 * (what no rule of that policy names, allow rules included). Not for the
 * container runtime's own execs in a new container's cgroup, which still run
 * in the host's mount namespace (see config_value.host_mnt_ns). */
static __always_inline void add_defaults(struct scratch *s, u32 set_id, u32 host_mnt_ns)
{
    struct set_defaults *defaults = set_defaults.lookup(&set_id);
    if (!defaults || in_host_mount_ns(host_mnt_ns))
        return;
    /* A hit still waiting for the arguments may yet name the exec. */
    u32 named = s->acc.named | s->acc.deferred_named;
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < MAX_DEFAULTS; i++) {
        if (i >= defaults->count)
            break;
        if (named & (1U << i))
            continue;
        u32 at = i;
        barrier_var(at);
        add_hit(s, &defaults->hits[at & (MAX_DEFAULTS - 1)]);
    }
}

typedef const char __user *const __user *argv_t;

#ifdef BACKEND_LSM
/* The argv the execve or execveat syscall was given, from the registers the
 * syscall entry saved (struct pt_regs is the x86-64 ABI's layout, the same in
 * every kernel's headers): an exec denied at a pass never reaches the point
 * where the new program's stack holds them. Read only when an event is sent. */
#ifndef bpf_target_x86
#error "syscall_argv reads x86-64's syscall numbers and pt_regs: port it to this architecture"
#endif
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

/* Where the next argument starts, past one that was cut (at is just past
 * what was copied): its end is searched for in SKIP_CHUNKS reads of
 * LONG_PATH_LEN bytes into tmp, and 0 past that: no more arguments are
 * reported, nor matched (ARG_SKIP_MAX in enforcer.h). */
#define SKIP_CHUNKS 8

static __always_inline u64 skip_argument(char *tmp, u64 at, u64 end)
{
#pragma clang loop unroll(disable)
    for (int k = 0; k < SKIP_CHUNKS; k++) {
        if (at >= end)
            return 0;
        int len = bpf_probe_read_user_str(tmp, LONG_PATH_LEN, (void *)at);
        if (len <= 0)
            return 0;
        if (len < LONG_PATH_LEN)
            return at + len;
        at += LONG_PATH_LEN - 1;
    }
    return 0;
}

/* The set's args conditions that the exec's arguments satisfy: each of the
 * first MATCH_ARGS after argv[0], from the new program's stack (the arguments
 * it really gets), is looked up whole. One that fills ARG_KEY_LEN may have
 * been cut: it matches nothing, and the search goes on past it. */
static __always_inline void match_args(struct scratch *s, u32 set_id)
{
    s->args_bits = 0;
    const char *mm = read_ptr((const char *)bpf_get_current_task() + OFF_TASK_MM);
    if (!mm)
        return;
    u64 at = 0, end = 0;
    bpf_probe_read_kernel(&at, sizeof(at), mm + OFF_MM_ARG_START);
    bpf_probe_read_kernel(&end, sizeof(end), mm + OFF_MM_ARG_END);
    s->arg.set_id = set_id;
#pragma clang loop unroll(disable)
    for (int i = 0; i <= MATCH_ARGS; i++) {
        if (at == 0 || at >= end)
            break;
        __builtin_memset(s->arg.arg, 0, ARG_KEY_LEN);
        int len = bpf_probe_read_user_str(s->arg.arg, ARG_KEY_LEN, (void *)at);
        if (len <= 0)
            break;
        if (len < ARG_KEY_LEN) {
            if (i > 0)   /* argv[0] is the caller's to choose, and no argument */
                s->args_bits |= mask_of(arg_values.lookup(&s->arg));
            at += len;
        } else {
            at = skip_argument(s->text, at + ARG_KEY_LEN - 1, end);
        }
    }
}

/* sched_process_exec: the hits that waited for the arguments count where
 * their args condition holds. The arguments are read only if one waits. */
static __always_inline void decide_deferred(struct scratch *s, u32 set_id)
{
    u32 count = s->acc.deferred_count;
    if (count == 0)
        return;
    match_args(s, set_id);
    s->acc.deferred_count = 0;
    s->acc.deferred_named = 0;
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < MAX_DEFERRED; i++) {
        if (i >= count)
            break;
        u32 at = i;
        barrier_var(at);
        struct hit h = s->acc.deferred[at & (MAX_DEFERRED - 1)];
        if (!((s->args_bits >> ((h.args - 1) & (MAX_CONDITIONS - 1))) & 1))
            continue;
        h.args = 0;
        add_hit(s, &h);
    }
}

/* The first arguments of the exec, for the event a person reads. By
 * sched_process_exec the old memory is gone: the new program's stack holds
 * them, from mm->arg_start, NUL-separated. */
static __always_inline void copy_args(struct event *event, char *tmp, int after_exec)
{
    event->argc = 0;
    if (after_exec) {
        void *task = (void *)bpf_get_current_task();
        void *mm = read_ptr((const char *)task + OFF_TASK_MM);
        if (!mm)
            return;
        u64 at = 0, end = 0;
        bpf_probe_read_kernel(&at, sizeof(at), (const char *)mm + OFF_MM_ARG_START);
        bpf_probe_read_kernel(&end, sizeof(end), (const char *)mm + OFF_MM_ARG_END);
#pragma unroll
        for (int i = 0; i < MAX_ARGS; i++) {
            if (at == 0 || at >= end)
                break;
            int len = bpf_probe_read_user_str(&event->args[i * ARG_LEN], ARG_LEN, (void *)at);
            if (len <= 0)
                break;
            event->argc = i + 1;
            /* len counts the NUL; ARG_LEN may also mean the argument was cut. */
            at = len < ARG_LEN ? at + len : skip_argument(tmp, at + ARG_LEN - 1, end);
        }
        return;
    }
#ifdef BACKEND_LSM
    argv_t argv = syscall_argv();
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
#endif
}

/* Returns 1 if the event was sent, 0 if the buffer had no room (counted). */
static __always_inline int submit(void *ctx, u64 cgroup_id, u32 kind, const struct hit *hit,
                                  struct scratch *s, const char *invoked, int after_exec)
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
        return 0;
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
    event->flags = s ? s->acc.flags : 0;
    bpf_get_current_comm(event->comm, sizeof(event->comm));
    event->filename[0] = 0;
    if (s)
        bpf_probe_read_kernel_str(event->filename, sizeof(event->filename), s->path.path);
    event->invoked[0] = 0;
    if (invoked)
        bpf_probe_read_kernel_str(event->invoked, sizeof(event->invoked), invoked);
    event->caller[0] = 0;
    if (s && (s->caller.flags & CALLER_KNOWN))
        bpf_probe_read_kernel_str(event->caller, sizeof(event->caller), s->caller.path);
    event->argc = 0;
    if (s && (kind == EVENT_MATCH || kind == EVENT_EXEC))
        copy_args(event, (char *)s->text, after_exec);
#ifdef USE_PERF_BUFFER
    if (events.perf_submit(ctx, event, sizeof(*event)) != 0) {
        bump(event_drops.lookup(&zero));
        return 0;
    }
#else
    events.ringbuf_submit(event, 0);
#endif
    return 1;
}

/* Whether another program counted this very exec already. At a generation
 * handover both generations' programs run on one exec, back to back on one
 * CPU, and each reads the liveness on its own: the switch can fall between
 * them, so that both decide. The second still kills, but counts and reports
 * nothing. An exec is its task and the task's self_exec_id (one more at
 * every exec that succeeds, so that sched_process_exec sees each exec's
 * own) and its bprm. Either way this program is the last to have counted
 * here. A false match (a denied exec retried at once, its bprm at the same
 * address, counted by the other generation) costs one count, never a kill. */
static __always_inline int counted_already(const struct config_value *cfg, const void *bprm)
{
    int zero = 0;
    struct counted_exec *last = last_counted.lookup(&zero);
    if (!last)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u64 exec_id = 0;
    bpf_probe_read_kernel(&exec_id, sizeof(exec_id),
                          (const char *)bpf_get_current_task() + OFF_TASK_SELF_EXEC_ID);
    int same = last->pid_tgid == pid_tgid && last->exec_id == exec_id &&
               last->bprm == (u64)bprm && last->instance != cfg->instance;
    last->pid_tgid = pid_tgid;
    last->bprm = (u64)bprm;
    last->exec_id = exec_id;
    last->instance = cfg->instance;
    return same;
}

/* Counts and reports every hit in s->acc; returns its VERDICT_ bits. */
static __always_inline u32 apply_hits(void *ctx, u64 cgroup_id, struct scratch *s,
                                      const char *invoked, int after_exec)
{
    if (s->acc.count)
        resolve_path(s);   /* the event shows the resolved path */
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < MAX_EXEC_HITS; i++) {
        if (i >= s->acc.count)
            break;
        u32 at = i;
        barrier_var(at);
        struct hit hit = s->acc.hits[at & (MAX_EXEC_HITS - 1)];
        if (hit.action == ACTION_ALLOW)
            continue;
        count_hit(cgroup_id, &hit, s->caller_id);
        submit(ctx, cgroup_id, EVENT_MATCH, &hit, s, invoked, after_exec);
    }
    return s->acc.verdict;
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

static __always_inline void count_unheld(void)
{
    int unheld = LIVE_UNHELD;
    bump(liveness.lookup(&unheld));
}

/* The config of the program in force, or 0 when this one is not. */
static __always_inline struct config_value *config_in_force(void)
{
    int zero = 0;
    struct config_value *cfg = config.lookup(&zero);
    if (!cfg || cfg->generation != live_generation())
        return 0;
    return cfg;
}

/* Once cgroup_sets has been full, a cgroup may lack the entry it would have
 * inherited (cgroup_mkdir): it takes its nearest ancestor's, so that a cgroup
 * made inside a selected container stays under the container's policies. */
static __always_inline struct cgroup_value *nearest_ancestor_entry(void)
{
    struct cgroup_value *found = 0;
#pragma clang loop unroll(disable)
    for (int level = 1; level < MAX_CGROUP_LEVELS; level++) {
        u64 ancestor = bpf_get_current_ancestor_cgroup_id(level);
        if (ancestor == 0)
            break;
        struct cgroup_value *entry = cgroup_sets.lookup(&ancestor);
        if (entry)
            found = entry;
    }
    return found;
}

static __always_inline int cgroups_overflowed(void)
{
    int slot = FULL_CGROUPS;
    u64 *full = full_maps.lookup(&slot);
    return full && *full;
}

/* The caller's set (0: none), its SET_ flags and the lengths of its names. */
static __always_inline u32 set_for_current(u64 cgroup_id, const struct config_value *cfg,
                                           u32 *flags, u64 *name_lengths)
{
    struct cgroup_value *selected = cgroup_sets.lookup(&cgroup_id);
    if (!selected && cgroups_overflowed())
        selected = nearest_ancestor_entry();
    if (selected) {
        *flags = selected->flags;
        *name_lengths = selected->name_lengths;
        return selected->set_id;
    }
    *flags = cfg->host_flags;
    *name_lengths = cfg->host_name_lengths;
    return cfg->host_set_id;
}

/* Stops the exec'ing thread, now running the new program but before its first
 * instruction, and parks what the daemon needs to decide it. If the held map
 * is full, the EVENT_HELD event (EXEC_UNSTORED) is the only record, and the
 * daemon reads the rest from /proc; if the event buffer is full too, the exec
 * is not stopped at all (HELD_LOST): no process waits for a decision that
 * nobody knows to make. */
static __always_inline void hold(void *ctx, u64 cgroup_id, u32 set_id, struct scratch *s,
                                 const void *bprm, int script)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    int zero = 0;
    struct held_exec *slot = held_space.lookup(&zero);
    if (!slot)
        return;
    resolve_path(s);
    read_inode_facts(&s->file);
    slot->cgroup_id = cgroup_id;
    slot->set_id = set_id;
    slot->ino = s->file.ino;
    slot->dev = s->file.dev;
    slot->flags = s->acc.flags | (script ? EXEC_SCRIPT : 0);
    bpf_probe_read_kernel_str(slot->path, PATH_LEN, s->path.path);
    __builtin_memset(slot->name, 0, NAME_LEN);
    u32 name_len = s->file.name_len;
    if (name_len < NAME_LEN) {
        barrier_var(name_len);
        bpf_probe_read_kernel(slot->name, name_len & (NAME_LEN - 1), s->file.name);
    }
    const char *filename = read_ptr((const char *)bprm + OFF_BPRM_FILENAME);
    const char *interp = read_ptr((const char *)bprm + OFF_BPRM_INTERP);
    bpf_probe_read_kernel_str(slot->invoked, PATH_LEN, filename);
    slot->interp_name[0] = 0;
    if (script && interp) {
        int len = bpf_probe_read_kernel_str(s->text, LONG_PATH_LEN, interp);
        if (len > 0) {
            /* bprm->interp is the #! line's path: keep its last NAME_LEN bytes
             * for userspace to take the basename from. */
            u32 from = len > NAME_LEN ? (u32)len - NAME_LEN : 0;
            barrier_var(from);
            from &= LONG_PATH_LEN - 1;
            bpf_probe_read_kernel_str(slot->interp_name, NAME_LEN, &s->text[from]);
        }
    }
    /* A relative script path is below the working directory. */
    struct kpath cwd = {}, root = {};
    task_fs_path(&cwd, OFF_FS_PWD);
    task_fs_path(&root, OFF_FS_ROOT);
    slot->cwd[0] = 0;
    if (walk_path(&s->walk, &cwd, &root) == 0)
        bpf_probe_read_kernel_str(slot->cwd, PATH_LEN, &s->walk.buf[s->walk.pos & (WALK_BUF - 1)]);
    slot->caller = s->caller;
    int stored = held.update(&tgid, slot) == 0;
    if (!stored) {
        int full = FULL_HELD;
        bump(full_maps.lookup(&full));
        s->acc.flags |= EXEC_UNSTORED;
        if (!submit(ctx, cgroup_id, EVENT_HELD, 0, s, filename, 1)) {
            int lost = HELD_LOST;
            bump(full_maps.lookup(&lost));
            return;
        }
    }
    /* To this thread, not the thread group: in a multi-threaded caller (a Go
     * runtime such as runc init) another thread could take a group-wide
     * SIGSTOP; by sched_process_exec the caller is single-threaded anyway. */
    if (bpf_send_signal_thread(SIGSTOP) != 0) {
        int stop = 1;
        bump(signal_errors.lookup(&stop));
    }
    if (stored)
        submit(ctx, cgroup_id, EVENT_HELD, 0, s, filename, 1);
}

/* sched_process_exec: the exec has succeeded; decide it. */
static __always_inline void on_exec(void *ctx, const void *bprm, u32 old_pid)
{
    int zero = 0;
    struct config_value *cfg = config_in_force();
    if (!cfg)
        return;
    bump(exec_total.lookup(&zero));
    u64 cgroup_id = bpf_get_current_cgroup_id();
    u32 flags = 0;
    u64 name_lengths = 0;
    u32 set_id = set_for_current(cgroup_id, cfg, &flags, &name_lengths);
    /* The common case, an exec no policy selects, ends here. */
    if (set_id == 0 && !cfg->trace_all)
        return;
    struct scratch *s = scratch_space.lookup(&zero);
    if (!s)
        return;
#ifdef HAS_PASS_HOOK
    /* on_pass keeps nothing for set 0 or a pending set. */
    struct exec_hits *passes = 0;
    if (set_id != 0 && set_id != SET_PENDING)
        passes = pass_hits.lookup(&old_pid);
#endif

    struct bprm_fields fields = {};
    read_bprm(&fields, bprm);
    const char *filename = fields.filename, *interp = fields.interp;
    int script = interp != filename;
    reset_hits(&s->acc, set_id);
    s->late = 1;
    s->name_lengths = name_lengths;
    take_caller(s, bprm, old_pid);
    if (set_id != 0 && set_id != SET_PENDING && (flags & SET_CALLERS))
        match_caller(s, set_id);
    read_exec_file(s, fields.file);
    if (script)
        s->acc.flags |= EXEC_SCRIPT;
    if (set_id == SET_PENDING) {
        if (daemon_alive())
            hold(ctx, cgroup_id, set_id, s, bprm, script);
        else
            count_unheld();
        return;
    }
    if (set_id != 0) {
#ifdef HAS_PASS_HOOK
        if (passes && passes->set_id == set_id) {
            /* Every pass's file was matched already, the last one being this. */
            u32 walked_flags = s->acc.flags;
            s->acc = *passes;
            s->acc.flags |= walked_flags;
            mark_hits(s, 1);
        } else {
            match_file(s, set_id, flags, interp, !script);
        }
        if (passes)
            pass_hits.delete(&old_pid);
#else
        if (script && (flags & SET_HOLD_SCRIPTS)) {
            if (daemon_alive()) {
                hold(ctx, cgroup_id, set_id, s, bprm, script);
                return;
            }
            count_unheld();
        }
        match_file(s, set_id, flags, interp, !script);
        if (script && (flags & SET_NAMES))
            lookup_invoked_name(s, set_id, filename);
#endif
        decide_deferred(s, set_id);
        if (flags & SET_DEFAULTS)
            add_defaults(s, set_id, cfg->host_mnt_ns);
    }
    u32 verdict = s->acc.verdict;
    if (s->acc.count && !counted_already(cfg, bprm))
        apply_hits(ctx, cgroup_id, s, filename, 1);
    if (cfg->trace_all && s->acc.count == 0) {
        resolve_path(s);
        submit(ctx, cgroup_id, EVENT_EXEC, 0, s, filename, 1);
    }
    if ((verdict & (VERDICT_KILL | VERDICT_DENY)) && bpf_send_signal(SIGKILL) != 0)
        bump(signal_errors.lookup(&zero));
    mark_hits(s, 0);
}

RAW_TRACEPOINT_PROBE(sched_process_exec)
{
    /* TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) */
    on_exec(ctx, (const void *)ctx->args[2], (u32)ctx->args[1]);
    return 0;
}

#ifdef HAS_PASS_HOOK
/* Whether this pass's file starts with "#!": bprm->buf holds its first bytes
 * by the time the pass hook runs (prepare_binprm). */
static __always_inline int starts_with_shebang(const void *bprm)
{
    char head[2] = {};
    bpf_probe_read_kernel(head, sizeof(head), (const char *)bprm + OFF_BPRM_BUF);
    return head[0] == '#' && head[1] == '!';
}

/* One binfmt pass (bprm->file is this pass's file: a script, then its
 * interpreter): adds its hits to the thread's. Returns the VERDICT_ bits of
 * every pass so far. The first pass (interp still equal to filename) starts
 * the exec's record afresh: one left by an exec that failed later is stale. */
static __always_inline u32 on_pass(void *ctx, const void *bprm)
{
    int zero = 0;
    struct config_value *cfg = config_in_force();
    struct scratch *s = scratch_space.lookup(&zero);
    if (!cfg || !s)
        return 0;
    u64 cgroup_id = bpf_get_current_cgroup_id();
    u32 flags = 0;
    u64 name_lengths = 0;
    u32 set_id = set_for_current(cgroup_id, cfg, &flags, &name_lengths);
    u32 tid = (u32)bpf_get_current_pid_tgid();
    s->late = 0;
    if (set_id == SET_PENDING)
        keep_caller(s, bprm);   /* for the daemon, which decides the held exec */
    if (set_id == 0 || set_id == SET_PENDING) {
        pass_hits.delete(&tid);
        return 0;
    }
    s->caller.flags = 0;
    if (flags & SET_CALLERS) {
        keep_caller(s, bprm);
        match_caller(s, set_id);
    }
    struct bprm_fields fields = {};
    read_bprm(&fields, bprm);
    const char *filename = fields.filename, *interp = fields.interp;
    s->name_lengths = name_lengths;
    struct exec_hits *earlier = pass_hits.lookup(&tid);
    if (interp != filename && earlier && earlier->set_id == set_id) {
        s->acc = *earlier;
        mark_hits(s, 1);
    } else {
        reset_hits(&s->acc, set_id);
    }
    read_exec_file(s, fields.file);
    match_file(s, set_id, flags, interp, 0);  /* comm is still the caller's */
#ifdef BACKEND_LSM
    /* A default deny fails the exec here, before its point of no return, on
     * the pass whose file is no #! script (the last one): by then every file
     * of the exec is matched. */
    if ((flags & SET_DEFAULTS) && !starts_with_shebang(bprm))
        add_defaults(s, set_id, cfg->host_mnt_ns);
#endif
    pass_hits.update(&tid, &s->acc);
#ifdef BACKEND_LSM
    if (s->acc.verdict & VERDICT_DENY) {
        /* The exec fails here: count it now, sched_process_exec never comes. */
        if (!counted_already(cfg, bprm))
            apply_hits(ctx, cgroup_id, s, filename, 0);
        pass_hits.delete(&tid);
    }
#endif
    mark_hits(s, 0);
    return s->acc.verdict;
}
#endif

/* cgroup v2 lifecycle: both creation and removal are reported; while the
 * daemon asks for it (hold_new) a new cgroup starts pending, and a removed one
 * always leaves the cgroup map.
 * These live here, not in a file of their own, because bcc generates the
 * tracepoint argument structs only for probes in the main source file. */
/* The tracepoints report cgroup v1 hierarchies too; v2 is hierarchy 0. */
#define CGROUP2_HIERARCHY 0

/* Whether a newer generation has taken over from this program. */
static __always_inline int superseded(const struct config_value *cfg)
{
    return cfg->generation < live_generation();
}

static __always_inline void submit_cgroup(void *ctx, u64 cgroup_id, u32 kind, const char *path)
{
    int zero = 0;
    struct scratch *s = scratch_space.lookup(&zero);
    if (!s)
        return;
    s->acc.flags = 0;
    s->caller.flags = 0;
    bpf_probe_read_kernel_str(s->path.path, PATH_LEN, path);
    submit(ctx, cgroup_id, kind, 0, s, 0, 0);
}

/* The id of a struct cgroup: its kernfs node's, the v2 directory's inode. */
static __always_inline u64 cgroup_id_of(const char *cgrp)
{
    u64 id = 0;
    bpf_probe_read_kernel(&id, sizeof(id), (const char *)read_ptr(cgrp + OFF_CGROUP_KN) + OFF_KERNFS_ID);
    return id;
}

/* What a new cgroup starts with. Made inside a placed container (a cgroup
 * its systemd or its own runtime makes), it inherits the container's set
 * there and then, so no exec there ever waits in a pending window that a
 * sibling's SIGCONT could end early. Any other starts pending while a daemon
 * classifies new cgroups. A cgroup_sets too full to take it is counted: from
 * then on, cgroups without an entry take their nearest ancestor's. */
static __always_inline void classify_new(const struct config_value *cfg, const char *cgrp, u64 cgroup_id)
{
    struct cgroup_value value = {.set_id = SET_PENDING};
    const char *parent_css = read_ptr(cgrp + OFF_CGROUP_SELF + OFF_CSS_PARENT);
    u64 parent_id = parent_css ? cgroup_id_of(parent_css - OFF_CGROUP_SELF) : 0;
    struct cgroup_value *parent = cgroup_sets.lookup(&parent_id);
    if (parent && parent->set_id != 0)
        value = *parent;
    else if (!(cfg->hold_new && daemon_alive()))
        return;
    /* BPF_NOEXIST: an entry userspace already wrote wins. */
    int err = cgroup_sets.insert(&cgroup_id, &value);
    if (err != 0 && err != -EEXIST) {
        int full = FULL_CGROUPS;
        bump(full_maps.lookup(&full));
    }
}

RAW_TRACEPOINT_PROBE(cgroup_mkdir)
{
    /* TP_PROTO(struct cgroup *cgrp, const char *path) */
    const char *cgrp = (const char *)ctx->args[0];
    int zero = 0;
    struct config_value *cfg = config.lookup(&zero);
    if (!cfg || superseded(cfg))
        return 0;
    int hierarchy = -1;
    bpf_probe_read_kernel(&hierarchy, sizeof(hierarchy),
                          (const char *)read_ptr(cgrp + OFF_CGROUP_ROOT) + OFF_CGROUP_ROOT_HIERARCHY);
    if (hierarchy != CGROUP2_HIERARCHY)
        return 0;
    u64 cgroup_id = cgroup_id_of(cgrp);
    classify_new(cfg, cgrp, cgroup_id);
    submit_cgroup(ctx, cgroup_id, EVENT_CGROUP_NEW, (const char *)ctx->args[1]);
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_rmdir)
{
    int zero = 0;
    struct config_value *cfg = config.lookup(&zero);
    if (args->root != CGROUP2_HIERARCHY || !cfg || superseded(cfg))
        return 0;
    u64 cgroup_id = args->id;
    cgroup_sets.delete(&cgroup_id);
    submit_cgroup(args, cgroup_id, EVENT_CGROUP_GONE,
                  (const char *)args + (args->data_loc_path & 0xFFFF));
    return 0;
}

/* A daemon that holds nothing for a next one (--hold-after-stop 0, an agent
 * in a pod) says so at a stop, but killed it cannot: its last renewal would
 * go on holding for the grace, and the next agent, starting at once in a new
 * container of its own, would be held waiting for itself. Its exit ends the
 * holding here, however it exits. Only a leader's exit counts: a thread's
 * does not end the process. */
RAW_TRACEPOINT_PROBE(sched_process_exit)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    if ((u32)pid_tgid != tgid)
        return 0;
    /* This program's own config, in force or not yet: a daemon killed before
     * it took over had renewed the holding too. */
    int zero = 0;
    struct config_value *cfg = config.lookup(&zero);
    if (!cfg || cfg->hold_owner != tgid || superseded(cfg))
        return 0;
    int slot = LIVE_HOLD_UNTIL;
    u64 *until = liveness.lookup(&slot);
    if (until)
        *until = 0;
    return 0;
}

#ifdef HAS_PREPARE_EXEC
/* The tracepoint backend's only look at the caller before its image goes:
 * begin_new_exec, past the point of no return, before the old mm is let go
 * (and before de_thread, so the thread is still sched_process_exec's
 * old_pid). Only where a calledBy rule or the daemon may need it. */
RAW_TRACEPOINT_PROBE(sched_prepare_exec)
{
    /* TP_PROTO(struct task_struct *task, struct linux_binprm *bprm) */
    int zero = 0;
    struct config_value *cfg = config_in_force();
    struct scratch *s = scratch_space.lookup(&zero);
    if (!cfg || !s)
        return 0;
    u32 flags = 0;
    u64 name_lengths = 0;
    u32 set_id = set_for_current(bpf_get_current_cgroup_id(), cfg, &flags, &name_lengths);
    if (set_id == SET_PENDING || (set_id != 0 && (flags & SET_CALLERS)))
        keep_caller(s, (const void *)ctx->args[1]);
    return 0;
}
#endif

#if defined(BACKEND_LSM)
struct linux_binprm;

/* Runs once per binfmt pass, before the point of no return: a non-zero return
 * makes execve fail with it. */
LSM_PROBE(bprm_check_security, struct linux_binprm *bprm)
{
    u32 verdict = on_pass(ctx, (const void *)bprm);
    return (verdict & VERDICT_DENY) ? -EPERM : 0;
}
#elif defined(BACKEND_KPROBE)
/* security_bprm_check(struct linux_binprm *bprm), once per binfmt pass. */
int pass_check(struct pt_regs *ctx)
{
    on_pass(ctx, (const void *)PT_REGS_PARM1(ctx));
    return 0;
}
#endif
