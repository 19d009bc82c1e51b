"""The mount table's one parser: escapes, order, and what is on top."""

from __future__ import annotations

from pathlib import Path

from enforcer.kernel.mounts import Mount, first_mount_of, is_mounted, read_mounts

TABLE = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
none /sys/kernel/tracing tmpfs rw 0 0
tracefs /sys/kernel/tracing tracefs rw 0 0
/dev/vda1 /mnt/my\\040disk\\011tab ext4 rw 0 0
cgroup2 /run/pod/cgroup cgroup2 rw 0 0
"""


def test_each_field_is_unescaped() -> None:
    mounts = read_mounts(TABLE)
    assert mounts[4] == Mount("/dev/vda1", Path("/mnt/my disk\ttab"), "ext4")
    assert is_mounted(Path("/mnt/my disk\ttab"), "ext4", TABLE)


def test_the_first_mount_of_a_type_is_the_hosts() -> None:
    assert first_mount_of("cgroup2", TABLE) == Path("/sys/fs/cgroup/unified")
    assert first_mount_of("bpf", TABLE) is None


def test_the_last_mount_on_a_target_is_the_one_on_top() -> None:
    assert is_mounted(Path("/sys/kernel/tracing"), "tracefs", TABLE)
    on_top_of_tracefs = TABLE + "none /sys/kernel/tracing tmpfs rw 0 0\n"
    assert not is_mounted(Path("/sys/kernel/tracing"), "tracefs", on_top_of_tracefs)
    assert not is_mounted(Path("/sys/kernel/debug"), "debugfs", TABLE)


def test_short_lines_are_skipped() -> None:
    assert read_mounts("garbage\n\nproc /proc proc rw 0 0\n") == [
        Mount("proc", Path("/proc"), "proc")
    ]
