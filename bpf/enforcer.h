/* SPDX-License-Identifier: GPL-2.0-only */
/* Structs, enums and sizes shared by the BPF programs and by Python.
 * enforcer/bpf/abi.py mirrors the enums and sizes; tests/unit/test_abi.py checks
 * that the two agree. Map key and value layouts reach Python through bcc's
 * generated ctypes (table.Key / table.Leaf, table.event), so they are written
 * only here. Types are bcc's u8..u64, the ones its event decoder knows. */
#ifndef ENFORCER_H
#define ENFORCER_H

/* What one matching rule does to the exec. Mode is folded in by the compiler:
 * an enforce-mode kill rule is ACTION_KILL, an enforce-mode deny rule
 * ACTION_DENY, everything else ACTION_AUDIT. Deny makes execve fail with EPERM
 * where the hook is an LSM one (BACKEND_LSM); the other backends decide after
 * the exec has succeeded, so there they kill instead and count and report the
 * hit as a kill. */
enum action {
    ACTION_AUDIT = 1,
    ACTION_KILL = 2,
    ACTION_DENY = 3,
    /* An allow rule's hit: it does nothing to the exec and is neither counted
     * nor reported; it only says its policy names the exec (match_value.named).
     * Kernel entries hold one only inside a group (see compiler._pack). */
    ACTION_ALLOW = 4,
};

/* Path bytes kept per exec; the LPM key holds the set id plus this. */
#define PATH_LEN 252
/* Basename bytes, NUL included: policy names are at most NAME_LEN - 1 bytes. */
#define NAME_LEN 64
/* Full path bytes read only when PATH_LEN cut the path short (PATH_MAX). */
#define LONG_PATH_LEN 4096
/* Most (policy, rule) pairs one lookup can hit. */
#define MAX_HITS 8
/* Most hits with an args condition one exec waits to test; past it they
 * count as if their arguments matched, allow hits as if not (fail closed). */
#define MAX_DEFERRED 8
/* Most distinct (policy, rule) pairs counted for one exec, over every lookup
 * (path, file, names, script). Past it the exec is still decided by every
 * hit, strictest first, but only these are counted and reported. */
#define MAX_EXEC_HITS 16
/* The resolved path of the file that runs is built by walking its dentries up
 * to the caller's root: at most WALK_STEPS steps (a directory, or a mount
 * crossed) and WALK_BUF bytes. A walk cut short by either is a "cut" path: it
 * matches every path and dir rule of the set (fail closed), see cut_hits. */
#define WALK_STEPS 64
#define WALK_BUF 4096
#define COMM_LEN 16
/* Arguments reported with a rule hit: the first MAX_ARGS, each cut to ARG_LEN. */
#define MAX_ARGS 6
#define ARG_LEN 64

/* Arguments a rule's args condition compares (match.args): the first
 * MATCH_ARGS after argv[0], each whole and within ARG_KEY_LEN bytes, NUL
 * included; a longer one never matches, and none past them is looked at. */
#define MATCH_ARGS 32
#define ARG_KEY_LEN 64
/* An argument longer than this (bytes, NUL excluded) ends the search: its end
 * is looked for in 8 reads of LONG_PATH_LEN (exec_enforcer.c, skip_argument). */
#define ARG_SKIP_MAX 32822
/* Distinct calledBy and args conditions of one policy set: a bit each in the
 * masks the caller and args lookups return (u64). */
#define MAX_CONDITIONS 64
#define MAX_CALLER_ENTRIES 16384
#define MAX_ARG_ENTRIES 16384

#define MAX_CGROUPS 16384
#define MAX_NAME_ENTRIES 65536
#define MAX_PATH_ENTRIES 65536
#define MAX_COUNTERS 65536
#define MAX_HELD 4096
#define RINGBUF_PAGES 64

/* Index of the config array's only entry. */
#define CONFIG_KEY 0

/* Slots of the liveness array, the one map every generation of the program
 * shares (pinned): a restarted daemon loads a new generation next to the one
 * still enforcing, fills its maps, and then makes it the one in force by
 * writing LIVE_GENERATION; no exec is decided twice or not at all. */
/* the generation that decides execs */
#define LIVE_GENERATION 0
/* bpf_ktime_get_ns() before which new cgroups' execs may be held */
#define LIVE_HOLD_UNTIL 1
/* execs in pending cgroups let run once LIVE_HOLD_UNTIL had passed */
#define LIVE_UNHELD 2
#define LIVE_SLOTS 3

/* Slots of the full_maps array: writes that found their map full. Each is
 * counted and reported (enforcer status, metrics); none fails open. */
/* a new cgroup got no cgroup_sets entry: from then on an exec in a cgroup
 * without one takes its nearest ancestor's (MAX_CGROUP_LEVELS deep) */
#define FULL_CGROUPS 0
/* an exec could not be parked in held: its event (EXEC_UNSTORED) carries it */
#define FULL_HELD 1
/* a hit could not be counted: counters had no room for its key */
#define FULL_COUNTERS 2
/* neither held nor the event buffer had room: the exec ran unheld */
#define HELD_LOST 3
#define FULL_SLOTS 4
#define MAX_CGROUP_LEVELS 32

/* cgroup_sets value of a cgroup created while enforcer runs and not yet
 * classified by userspace (0xFFFFFFFF): its execs are held with SIGSTOP until
 * userspace decides, so a new container's entrypoint cannot slip through. */
#define SET_PENDING 4294967295

/* What a policy set's entries need looked up per exec (cgroup_value.flags):
 * a lookup the set has no entries for is skipped. */
#define SET_NAMES 1        /* rule_names: basenames */
#define SET_PATHS 2        /* rule_paths: walk the file's dentries to its path */
#define SET_INODES 4       /* rule_inodes: the files that policy paths resolved to */
/* Enforce-mode path or dir rules on a backend without a pass hook (see
 * exec_enforcer.c): a #! script's own file is gone by sched_process_exec, so
 * the exec is held and the daemon resolves the script's path. */
#define SET_HOLD_SCRIPTS 8
/* Policies of the set have a default for what no rule of theirs names
 * (set_defaults): applied once every file of the exec is matched. */
#define SET_DEFAULTS 16
/* Rules of the set have calledBy conditions: the calling program's file is
 * read before the new image replaces it (see caller_info). */
#define SET_CALLERS 32

/* Most policies with a default (other than allow) in one set. */
#define MAX_DEFAULTS 8

/* cgroup id -> the policy set compiled for it. set_id 0 selects nothing. */
struct cgroup_value {
    u32 set_id;
    u32 flags;         /* SET_* */
    u64 name_lengths;  /* bit N: the set names a program N bytes long */
};

/* Everything the kernel needs that is not per cgroup. */
struct config_value {
    u32 host_set_id;   /* set for cgroups absent from the cgroup map */
    u32 host_flags;    /* SET_* of host_set_id */
    u64 host_name_lengths;
    u32 trace_all;     /* 1: submit an event for every exec (enforcer trace) */
    u32 hold_new;      /* 1: new cgroups start SET_PENDING (the daemon classifies them) */
    u32 generation;    /* this program's; it acts while liveness says it is in force */
    /* The host's mount namespace (its inode number): an exec there, in a
     * container's cgroup, is the runtime's own (runc re-executing itself
     * before it makes the container's namespaces), and no default applies. */
    u32 host_mnt_ns;
    /* The set-id bank in force (enforcer/bpf/rule_banks.py); the kernel never
     * reads it: it is kept here for a next daemon that reuses this program. */
    u32 bank;
    /* Random, nonzero, this program's own (see counted_already). */
    u32 instance;
    /* The daemon (tgid) whose exit, however it exits, ends the holding of new
     * cgroups' execs at once (--hold-after-stop 0); 0 for none. */
    u32 hold_owner;
};

/* The exec whose hits a program counted last on a CPU (last_counted). */
struct counted_exec {
    u64 pid_tgid;
    u64 bprm;          /* its struct linux_binprm, as an address */
    u64 exec_id;       /* task_struct.self_exec_id (u64 since Linux 5.7): one more at each exec */
    u32 instance;      /* config_value.instance of the program that counted */
    u32 reserved;
};

struct hit {
    u16 policy_id;
    u16 rule_id;
    u16 target_id;     /* which names/paths/dirs entry matched */
    u16 action;        /* enum action */
    /* Conditions (match.calledBy, match.args): 0 for none, else 1 + the bit
     * of the set's caller or args mask that must be set for the hit to count. */
    u8 caller;
    u8 args;
    /* A conditional hit's match_value.named bits: they count only when its
     * conditions hold (an unconditional hit's are in its entry's named). */
    u8 named;
    u8 reserved;
};

struct match_value {
    u32 count;
    /* bit i: the set's default policy i (set_defaults.hits[i]) names what
     * this entry matches, through any of its rules, allow rules included */
    u32 named;
    struct hit hits[MAX_HITS];
};

/* set id -> the default of each of its policies that has one: hits[i] (rule
 * "(default)", target 0) applies to an exec that bit i of no entry it matched
 * names. */
struct set_defaults {
    u32 count;
    u32 reserved;
    struct hit hits[MAX_DEFAULTS];
};

struct name_key {
    u32 set_id;
    char name[NAME_LEN];
};

/* LPM trie key: exact paths are stored with their NUL (so they match only
 * whole), directories with a trailing '/' (so they match what lies below). */
struct path_key {
    u32 prefixlen;
    u32 set_id;
    char path[PATH_LEN];
};

/* A file that a policy path named, as it was when the daemon resolved it in
 * the container's root: a hardlink to it or the file renamed is the same
 * inode. dev is the kernel's encoding (MAJOR << 20 | MINOR). */
struct inode_key {
    u32 set_id;
    u32 dev;
    u64 ino;
};

/* Every hit of one exec, one per (policy, rule); see MAX_EXEC_HITS. Kept per
 * thread between an exec's binfmt passes (pass_hits) on the lsm and kprobe
 * backends, so a #! script's own file counts next to its interpreter. */
struct exec_hits {
    u32 set_id;
    u32 count;
    u32 verdict;       /* VERDICT_* bits of every hit, those past MAX_EXEC_HITS too */
    u32 flags;         /* EXEC_* */
    u32 named;         /* match_value.named of every entry matched */
    /* Hits with an args condition wait here until sched_process_exec, where
     * the arguments the new program gets are read (its stack): deferred_named
     * holds their named bits, whose defaults wait too. */
    u32 deferred_count;
    u32 deferred_named;
    u32 reserved;
    struct hit hits[MAX_EXEC_HITS];
    struct hit deferred[MAX_DEFERRED];
};

/* What an argument lookup (arg_values) finds: the bits of the set's
 * conditions that name this argument. */
struct condition_mask {
    u64 bits;
};

/* What a caller lookup (caller_names, caller_paths, caller_inodes) finds: the
 * bits of the set's calledBy conditions that name this file, and the target
 * id of the calledBy entry that does (the counters say who called). */
struct caller_entry {
    u64 bits;
    u16 caller_id;
    u16 reserved[3];
};

struct arg_key {
    u32 set_id;
    char arg[ARG_KEY_LEN];
};

/* caller_info.flags */
#define CALLER_KNOWN 1     /* the fields below were read */
#define CALLER_PATH_CUT 2  /* the walk of its path was cut */

/* The program doing an exec: its mm's exe_file, read before the new image
 * replaces it (the pass hook, or sched_prepare_exec), kept per thread
 * (callers) until sched_process_exec of that same exec. */
struct caller_info {
    u64 bprm;          /* the exec's struct linux_binprm, as an address */
    u64 exec_id;       /* self_exec_id sched_process_exec will see */
    u64 ino;
    u32 dev;
    u32 flags;         /* CALLER_* */
    char name[NAME_LEN];
    char path[PATH_LEN];
};

struct counter_key {
    u64 cgroup_id;
    u16 policy_id;
    u16 rule_id;
    u16 target_id;
    u16 action;        /* enum action, | COUNTED_BY_DAEMON */
    u16 caller_id;     /* a calledBy rule's: the entry that named the caller, or 0 */
    u16 reserved[3];
};

/* counter_key.action bit of the hits the daemon decides (held execs). The
 * kernel never writes such a key, so the daemon's read-then-write of it races
 * no increment of the kernel's; readers add the two rows up. */
#define COUNTED_BY_DAEMON 256

enum event_kind {
    EVENT_MATCH = 1,     /* a rule matched; hit says which and what was done */
    EVENT_EXEC = 2,      /* trace_all: an exec that matched nothing */
    EVENT_HELD = 3,      /* an exec in a pending cgroup, stopped; see the held map */
    EVENT_CGROUP_NEW = 4,  /* a cgroup was created; filename holds its path */
    EVENT_CGROUP_GONE = 5, /* a cgroup was removed */
};

/* exec_hits.flags, held_exec.flags and event.flags */
#define EXEC_PATH_CUT 1    /* the walk was cut: path holds what was reached */
#define EXEC_SCRIPT 2      /* a #! script or binfmt_misc: invoked is the script */
#define EXEC_FILE_UNREAD 4 /* the file could not be read at all */
#define EXEC_UNSTORED 8    /* EVENT_HELD: held had no room, this event is the only record */

/* The held map's pin name: it changes with struct held_exec's layout (see
 * enforcer/bpf/pins.py, which lets go of what an older layout still holds). */
#define HELD_PIN "held-3"

/* An exec stopped for userspace to decide (key: tgid): in a pending cgroup,
 * or a script whose own path the daemon resolves (SET_HOLD_SCRIPTS). It has
 * already succeeded: the new program is in place and has run nothing. */
struct held_exec {
    u64 cgroup_id;
    u64 ino;
    u32 dev;
    u32 flags;               /* EXEC_* */
    u32 set_id;              /* SET_PENDING, or the set it was held in */
    u32 reserved;
    char path[PATH_LEN];     /* the file that runs, resolved in the caller's root */
    char name[NAME_LEN];     /* its basename */
    char interp_name[NAME_LEN]; /* basename of the interpreter as the #! line names it */
    char invoked[PATH_LEN];  /* the path as passed to exec (for a script, the script's) */
    char cwd[PATH_LEN];      /* the caller's working directory, resolved */
    struct caller_info caller;  /* the program that called exec */
};

struct event {
    u64 timestamp_ns;  /* bpf_ktime_get_boot_ns */
    u64 cgroup_id;
    u32 pid;           /* tgid */
    u32 tid;
    u32 uid;
    u32 kind;          /* enum event_kind */
    /* The hit, flattened: bcc decodes events only from scalar fields. */
    u16 policy_id;
    u16 rule_id;
    u16 target_id;
    u16 action;
    u32 flags;           /* EXEC_* */
    char comm[COMM_LEN];
    char filename[PATH_LEN];  /* the file that runs, resolved; a cgroup's path */
    char invoked[PATH_LEN];   /* the path as passed to exec */
    char caller[PATH_LEN];    /* the program that called exec, resolved; "" if unknown */
    u32 argc;            /* slots of args filled */
    char args[MAX_ARGS * ARG_LEN];  /* slot i at i * ARG_LEN, NUL-terminated */
};

/* Each of these bounds an index for the verifier as a mask, x & (N - 1):
 * unless N is a power of two, that mask would cut valid indexes. */
#define IS_POWER_OF_TWO(n) ((n) > 0 && ((n) & ((n) - 1)) == 0)
_Static_assert(IS_POWER_OF_TWO(NAME_LEN), "NAME_LEN is used as a mask");
_Static_assert(IS_POWER_OF_TWO(WALK_BUF), "WALK_BUF is used as a mask");
_Static_assert(IS_POWER_OF_TWO(MAX_HITS), "MAX_HITS is used as a mask");
_Static_assert(IS_POWER_OF_TWO(MAX_EXEC_HITS), "MAX_EXEC_HITS is used as a mask");
_Static_assert(IS_POWER_OF_TWO(MAX_DEFERRED), "MAX_DEFERRED is used as a mask");
_Static_assert(IS_POWER_OF_TWO(MAX_DEFAULTS), "MAX_DEFAULTS is used as a mask");
_Static_assert(IS_POWER_OF_TWO(MAX_CONDITIONS), "MAX_CONDITIONS is used as a mask");

#endif
