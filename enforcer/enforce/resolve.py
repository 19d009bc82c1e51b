"""Policy paths resolved inside a container's root, as the kernel will see the file.

The kernel matches the file an exec runs by its resolved path (every symlink
followed, inside the caller's root) and by its inode. A policy path is text:
`/bin/sh` in a merged-/usr Debian container is the file `/usr/bin/dash`. So
each path and dir a policy names is resolved here, in each selected
container's root (`/proc/PID/root`), one component at a time from directory
file descriptors: symlinks are followed as the container would follow them
(an absolute target starts again at the container's root, never the host's)
and `..` never climbs above that root, whatever the container does to its
files meanwhile.

A path that does not exist (yet) keeps its unresolved tail as written: the
kernel then matches it once a file is there, by path.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from enforcer.errors import EnforcerError

# What Linux allows one path lookup (MAXSYMLINKS).
MAX_SYMLINKS = 40
HOST_ROOT = Path("/")


class ResolveError(EnforcerError):
    """Raised when a path cannot be resolved in a root (a symlink loop, an unreadable root)."""


@dataclass(frozen=True, order=True)
class ResolvedPath:
    """A path as written in a policy, resolved in one root."""

    canonical: str  # inside the root, every symlink followed, no '.', '..' or '//'
    inode: tuple[int, int] | None = None  # (kernel dev, ino) of the file there now


# A policy path or dir as written -> how it resolves in one root.
RootView = Mapping[str, ResolvedPath]


def kernel_dev(st_dev: int) -> int:
    """stat's st_dev in the kernel's encoding (MAJOR << 20 | MINOR), as the BPF side reads it."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def container_root(pid: int | None) -> Path | None:
    """The root a process sees (`/proc/PID/root`), or None without a process."""
    return None if pid is None else Path(f"/proc/{pid}/root")


def root_view(root: Path, paths: Iterable[str]) -> dict[str, ResolvedPath]:
    """Every path resolved in `root`; raises ResolveError when `root` cannot be opened."""
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise ResolveError(f"cannot open the root {root}: {e.strerror}") from e
    try:
        return {path: resolve_in_root(root_fd, path) for path in dict.fromkeys(paths)}
    finally:
        os.close(root_fd)


def resolve_in_root(root_fd: int, path: str, cwd: str = "/") -> ResolvedPath:
    """`path` (relative ones below `cwd`, itself resolved) resolved inside the root `root_fd`."""
    pending = deque(_parts(path if path.startswith("/") else f"{cwd}/{path}"))
    walk = _Walk(root_fd)
    try:
        while pending:
            part = pending.popleft()
            if part == ".":
                continue
            if part == "..":
                walk.up()
                continue
            try:
                st = os.stat(part, dir_fd=walk.fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return ResolvedPath(_join([*walk.names, *_lexical([part, *pending])]))
            except OSError as e:
                raise ResolveError(f"cannot resolve {path!r}: {e.strerror}") from e
            if stat.S_ISLNK(st.st_mode):
                walk.follow(part, pending)
                continue
            if not pending:
                return ResolvedPath(_join([*walk.names, part]), (kernel_dev(st.st_dev), st.st_ino))
            if not stat.S_ISDIR(st.st_mode):
                return ResolvedPath(_join([*walk.names, *_lexical([part, *pending])]))
            walk.down(part)
        st = os.stat(walk.fd)
        return ResolvedPath(_join(walk.names), (kernel_dev(st.st_dev), st.st_ino))
    finally:
        walk.close()


class _Walk:
    """The directories resolved so far, each held open, below the root."""

    def __init__(self, root_fd: int) -> None:
        self._root_fd = root_fd
        self._dirs: list[tuple[str, int]] = []
        self._links = 0

    @property
    def fd(self) -> int:
        return self._dirs[-1][1] if self._dirs else self._root_fd

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._dirs]

    def down(self, name: str) -> None:
        flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        self._dirs.append((name, os.open(name, flags, dir_fd=self.fd)))

    def up(self) -> None:
        """`..`: one directory up, and at the root, the root (as the kernel does)."""
        if self._dirs:
            os.close(self._dirs.pop()[1])

    def follow(self, name: str, pending: deque[str]) -> None:
        """Puts a symlink's target in front of what is left to resolve."""
        self._links += 1
        if self._links > MAX_SYMLINKS:
            raise ResolveError(f"more than {MAX_SYMLINKS} symlinks (a loop?) at {name!r}")
        target = os.readlink(name, dir_fd=self.fd)
        if target.startswith("/"):
            self.close()
        pending.extendleft(reversed(_parts(target)))

    def close(self) -> None:
        while self._dirs:
            os.close(self._dirs.pop()[1])


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _lexical(parts: Iterable[str]) -> list[str]:
    """'.' and '..' taken out of a tail that does not exist, textually."""
    kept: list[str] = []
    for part in parts:
        if part == "..":
            if kept:
                kept.pop()
        elif part != ".":
            kept.append(part)
    return kept


def _join(names: Iterable[str]) -> str:
    return "/" + "/".join(names)
