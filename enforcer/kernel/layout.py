"""The kernel struct offsets the exec program reads at, from the running kernel's BTF.

bcc compiles against whatever headers /lib/modules/$(uname -r)/build holds,
which may belong to another kernel, so the program never dereferences a
kernel struct through them: bpf/file_identity.h reads every field with
bpf_probe_read_kernel at an offset given here as `-DOFF_...=N`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from enforcer.kernel.btf import Btf

# -D name -> (struct, member): what bpf/exec_enforcer.c and file_identity.h read.
FIELDS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "OFF_BPRM_FILE": ("linux_binprm", "file"),
        "OFF_BPRM_FILENAME": ("linux_binprm", "filename"),
        "OFF_BPRM_INTERP": ("linux_binprm", "interp"),
        "OFF_BPRM_BUF": ("linux_binprm", "buf"),
        "OFF_FILE_PATH": ("file", "f_path"),
        "OFF_FILE_INODE": ("file", "f_inode"),
        "OFF_PATH_MNT": ("path", "mnt"),
        "OFF_PATH_DENTRY": ("path", "dentry"),
        "OFF_DENTRY_PARENT": ("dentry", "d_parent"),
        "OFF_DENTRY_NAME": ("dentry", "d_name"),
        "OFF_QSTR_LEN": ("qstr", "len"),
        "OFF_QSTR_NAME": ("qstr", "name"),
        "OFF_INODE_INO": ("inode", "i_ino"),
        "OFF_INODE_SB": ("inode", "i_sb"),
        "OFF_SB_DEV": ("super_block", "s_dev"),
        "OFF_MOUNT_MNT": ("mount", "mnt"),
        "OFF_MOUNT_PARENT": ("mount", "mnt_parent"),
        "OFF_MOUNT_MOUNTPOINT": ("mount", "mnt_mountpoint"),
        "OFF_VFSMOUNT_ROOT": ("vfsmount", "mnt_root"),
        "OFF_TASK_FS": ("task_struct", "fs"),
        "OFF_TASK_MM": ("task_struct", "mm"),
        "OFF_TASK_SELF_EXEC_ID": ("task_struct", "self_exec_id"),
        "OFF_FS_ROOT": ("fs_struct", "root"),
        "OFF_FS_PWD": ("fs_struct", "pwd"),
        "OFF_MM_ARG_START": ("mm_struct", "arg_start"),
        "OFF_MM_ARG_END": ("mm_struct", "arg_end"),
        "OFF_MM_EXE_FILE": ("mm_struct", "exe_file"),
        "OFF_TASK_NSPROXY": ("task_struct", "nsproxy"),
        "OFF_NSPROXY_MNT_NS": ("nsproxy", "mnt_ns"),
        "OFF_MNT_NS_NS": ("mnt_namespace", "ns"),
        "OFF_NS_COMMON_INUM": ("ns_common", "inum"),
        "OFF_CGROUP_SELF": ("cgroup", "self"),
        "OFF_CGROUP_KN": ("cgroup", "kn"),
        "OFF_CGROUP_ROOT": ("cgroup", "root"),
        "OFF_CSS_PARENT": ("cgroup_subsys_state", "parent"),
        "OFF_KERNFS_ID": ("kernfs_node", "id"),
        "OFF_CGROUP_ROOT_HIERARCHY": ("cgroup_root", "hierarchy_id"),
    }
)


# Fields read together in one probe where they lie within BLOCK_MAX bytes of
# each other: -D<NAME>_BLOCK_START and <NAME>_BLOCK_LEN, else neither (and the
# C reads them one by one). (field, its size in bytes).
BLOCKS: Mapping[str, tuple[tuple[str, int], ...]] = MappingProxyType(
    {
        "BPRM": (("OFF_BPRM_FILE", 8), ("OFF_BPRM_FILENAME", 8), ("OFF_BPRM_INTERP", 8)),
        "FILE": (("OFF_FILE_INODE", 8), ("OFF_FILE_PATH", 16)),
    }
)
BLOCK_MAX = 64


@dataclass(frozen=True)
class ExecLayout:
    """Byte offsets of every field in FIELDS, or the fields the BTF lacks."""

    offsets: Mapping[str, int]
    missing: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing

    def cflags(self) -> list[str]:
        flags = [f"-D{name}={offset}" for name, offset in sorted(self.offsets.items())]
        for block, fields in BLOCKS.items():
            if all(name in self.offsets for name, _ in fields):
                start = min(self.offsets[name] for name, _ in fields)
                end = max(self.offsets[name] + size for name, size in fields)
                aligned = all(self.offsets[name] % 8 == 0 for name, _ in fields)
                if end - start <= BLOCK_MAX and aligned:
                    flags += [
                        f"-D{block}_BLOCK_START={start}",
                        f"-D{block}_BLOCK_LEN={end - start}",
                    ]
        return flags

    def offset(self, struct_name: str, member: str) -> int | None:
        for name, field in FIELDS.items():
            if field == (struct_name, member):
                return self.offsets.get(name)
        return None


def exec_layout(btf: Btf) -> ExecLayout:
    offsets: dict[str, int] = {}
    missing: list[str] = []
    for name, (struct_name, member) in FIELDS.items():
        offset = btf.member_offset(struct_name, member)
        if offset is None:
            missing.append(f"{struct_name}.{member}")
        else:
            offsets[name] = offset
    return ExecLayout(MappingProxyType(offsets), tuple(missing))
