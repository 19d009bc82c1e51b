/* SPDX-License-Identifier: GPL-2.0-only */
/* The identity of the file an exec runs, read from kernel memory: its inode,
 * its basename and its path resolved inside the caller's root, never the
 * string the caller passed.
 *
 * Every struct is read with bpf_probe_read_kernel at byte offsets the daemon
 * takes from the running kernel's BTF and passes as -D flags (OFF_*, see
 * enforcer/kernel/layout.py): the headers bcc compiles against may belong to another
 * kernel, and their layouts would be wrong.
 *
 * The path walk is d_path's: up the dentries to the root of their mount, then
 * from the mountpoint in the parent mount, until the caller's root (its
 * chroot or pivot_root, so a container's path is the one inside it). It stops
 * after WALK_STEPS steps or WALK_BUF bytes, and says so (the caller fails
 * closed); a file outside the caller's root (an fd passed in from elsewhere)
 * resolves up to the top of its own mount tree. */
#ifndef FILE_IDENTITY_H
#define FILE_IDENTITY_H

#define NAME_MAX_LEN 255

/* Keeps clang from dropping a bounds mask the verifier needs to see. */
#define barrier_var(v) asm volatile("" : "+r"(v))

static __always_inline void *read_ptr(const void *at)
{
    void *value = 0;
    bpf_probe_read_kernel(&value, sizeof(value), at);
    return value;
}

/* struct path: a mount and a dentry. */
struct kpath {
    void *mnt;     /* struct vfsmount * */
    void *dentry;
};

static __always_inline void read_kpath(struct kpath *out, const void *at)
{
    out->mnt = read_ptr((const char *)at + OFF_PATH_MNT);
    out->dentry = read_ptr((const char *)at + OFF_PATH_DENTRY);
}

/* Where a walk writes: the path grows down from walk_buf[WALK_BUF], one
 * component at a time; the slack above lets the verifier see every write of
 * up to NAME_MAX_LEN bytes at a masked offset stay inside. pos and the
 * pointers live here, not in registers, so the verifier sees one state per
 * loop iteration instead of one per path taken to it. */
struct walk_state {
    char buf[WALK_BUF + NAME_MAX_LEN + 1];
    u32 pos;
    u32 cut;
    void *vfsmnt;
    void *mount;   /* struct mount * around vfsmnt */
    void *dentry;
};

/* The dentry fields a step needs: its parent and its name (struct qstr). */
struct dentry_step {
    void *parent;
    u32 hash;
    u32 len;
    const char *name;
};

/* The name of a dentry, in one read where struct qstr is {hash, len, name}
 * (every kernel since 3.x), else in two. */
static __always_inline void read_name(struct dentry_step *step, const void *dentry)
{
    const char *qstr = (const char *)dentry + OFF_DENTRY_NAME;
#if OFF_QSTR_LEN == 4 && OFF_QSTR_NAME == 8
    bpf_probe_read_kernel(&step->hash, 16, qstr);
#else
    bpf_probe_read_kernel(&step->len, sizeof(step->len), qstr + OFF_QSTR_LEN);
    step->name = read_ptr(qstr + OFF_QSTR_NAME);
#endif
}

/* A dentry's parent and name, in one read where d_name follows d_parent. */
static __always_inline void read_step(struct dentry_step *step, const void *dentry)
{
#if OFF_DENTRY_NAME == OFF_DENTRY_PARENT + 8 && OFF_QSTR_LEN == 4 && OFF_QSTR_NAME == 8
    bpf_probe_read_kernel(step, sizeof(*step), (const char *)dentry + OFF_DENTRY_PARENT);
#else
    step->parent = read_ptr((const char *)dentry + OFF_DENTRY_PARENT);
    read_name(step, dentry);
#endif
}

/* One step of the walk; returns 1 when the walk is over (w->cut says how). */
static __always_inline int walk_step(struct walk_state *w, const struct kpath *root)
{
    if (w->dentry == root->dentry && w->vfsmnt == root->mnt)
        return 1;
    if (w->dentry == read_ptr((const char *)w->vfsmnt + OFF_VFSMOUNT_ROOT)) {
        void *parent = read_ptr((const char *)w->mount + OFF_MOUNT_PARENT);
        if (!parent || parent == w->mount)
            return 1;   /* the top of this mount tree */
        w->dentry = read_ptr((const char *)w->mount + OFF_MOUNT_MOUNTPOINT);
        w->mount = parent;
        w->vfsmnt = (char *)parent + OFF_MOUNT_MNT;
        return 0;
    }
    struct dentry_step step = {};
    read_step(&step, w->dentry);
    if (!step.parent || step.parent == w->dentry)
        return 1;       /* a filesystem's root that is no mount's root */
    u32 len = step.len, pos = w->pos;
    if (len == 0 || len > NAME_MAX_LEN || len + 1 > pos) {
        w->cut = 1;
        return 1;
    }
    pos -= len;
    u32 at = pos, size = len;
    barrier_var(at);
    at &= WALK_BUF - 1;
    barrier_var(size);
    size &= NAME_MAX_LEN;
    bpf_probe_read_kernel(&w->buf[at], size, step.name);
    pos -= 1;
    w->buf[pos & (WALK_BUF - 1)] = '/';
    w->pos = pos;
    w->dentry = step.parent;
    return 0;
}

/* Walks `file` up to `root`; the path is &w->buf[w->pos & (WALK_BUF - 1)],
 * NUL-terminated, "/" for the root itself. Returns 0, or -1 if it was cut. */
static __always_inline int walk_path(struct walk_state *w, const struct kpath *file,
                                     const struct kpath *root)
{
    w->pos = WALK_BUF;
    w->cut = 1;   /* unless a step ends the walk before WALK_STEPS */
    w->vfsmnt = file->mnt;
    w->mount = (char *)file->mnt - OFF_MOUNT_MNT;
    w->dentry = file->dentry;
    w->buf[WALK_BUF] = 0;
#pragma clang loop unroll(disable)
    for (int i = 0; i < WALK_STEPS; i++) {
        w->cut = 0;
        if (walk_step(w, root))
            break;
        w->cut = 1;
    }
    if (w->pos == WALK_BUF) {
        w->pos = WALK_BUF - 1;
        w->buf[WALK_BUF - 1] = '/';
    }
    return w->cut ? -1 : 0;
}

/* The current task's root, or its working directory (OFF_FS_PWD). */
static __always_inline void task_fs_path(struct kpath *out, u32 which)
{
    void *task = (void *)bpf_get_current_task();
    void *fs = read_ptr((const char *)task + OFF_TASK_FS);
    out->mnt = 0;
    out->dentry = 0;
    if (fs)
        read_kpath(out, (const char *)fs + which);
}

/* What the kernel says of one file (struct file *). The inode's number and
 * device are read only when asked for (read_inode_facts): a set of names
 * only never needs them. */
struct file_facts {
    struct kpath path;
    void *inode;
    u64 ino;
    u32 dev;
    u32 name_len;
    const char *name;   /* its dentry's name: the basename after every symlink */
    u32 inode_read;
};

/* Returns 0, or -1 when the file could not be read. */
static __always_inline int read_file_facts(struct file_facts *out, const void *file)
{
    out->inode_read = 0;
    out->ino = 0;
    out->dev = 0;
    if (!file)
        return -1;
#if defined(FILE_BLOCK_LEN) && OFF_PATH_MNT == 0 && OFF_PATH_DENTRY == 8
    /* f_inode and f_path in one read (FILE_BLOCK_*, from enforcer/kernel/layout.py). */
    u64 block[FILE_BLOCK_LEN / 8] = {};
    bpf_probe_read_kernel(block, sizeof(block), (const char *)file + FILE_BLOCK_START);
    out->inode = (void *)block[(OFF_FILE_INODE - FILE_BLOCK_START) / 8];
    out->path.mnt = (void *)block[(OFF_FILE_PATH - FILE_BLOCK_START) / 8];
    out->path.dentry = (void *)block[(OFF_FILE_PATH - FILE_BLOCK_START) / 8 + 1];
#else
    read_kpath(&out->path, (const char *)file + OFF_FILE_PATH);
    out->inode = read_ptr((const char *)file + OFF_FILE_INODE);
#endif
    if (!out->path.dentry || !out->inode)
        return -1;
    struct dentry_step step = {};
    read_name(&step, out->path.dentry);
    out->name_len = step.len;
    out->name = step.name;
    return 0;
}

static __always_inline void read_inode_facts(struct file_facts *file)
{
    if (file->inode_read || !file->inode)
        return;
    file->inode_read = 1;
    bpf_probe_read_kernel(&file->ino, sizeof(file->ino), (const char *)file->inode + OFF_INODE_INO);
    void *sb = read_ptr((const char *)file->inode + OFF_INODE_SB);
    if (sb)
        bpf_probe_read_kernel(&file->dev, sizeof(file->dev), (const char *)sb + OFF_SB_DEV);
}

#endif
