"""Named network namespaces: the names `ip netns list` shows, and their inode numbers.

`ip netns add NAME` (and CNI plugins, and CRI-O) bind-mount a network
namespace at /run/netns/NAME; the inode number of that file is the
namespace's, the same number /proc/PID/ns/net of its processes shows. That
lets a selector name a network namespace, and enforcer match it against
containers' `net_ns`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

NETNS_RUN_DIR = Path("/run/netns")


def named_netns(run_dir: Path = NETNS_RUN_DIR) -> dict[str, int]:
    """Return {name: network namespace inode} for each namespace named under `run_dir`.

    A missing `run_dir` (no namespace was ever named) means none. A name
    whose file vanishes while we look, or is not a mounted namespace, is left
    out: a file there that is not a bind mount of a namespace has some other
    inode number, which no process's namespace would match, but enforcer
    should not claim it as a namespace either.
    """
    # Here, not at the top: importing pyroute2 takes about 0.25 s (its
    # package imports every netlink family), which every CLI command paid.
    from pyroute2 import netns  # noqa: PLC0415

    names: list[str] = netns.listnetns(str(run_dir))
    found: dict[str, int] = {}
    for name in sorted(names):
        try:
            st = os.stat(run_dir / name)
        except OSError as e:
            log.debug("skipping network namespace %r: %s", name, e)
            continue
        if not _is_nsfs(st, run_dir):
            log.debug("skipping %s: not a mounted network namespace", run_dir / name)
            continue
        found[name] = st.st_ino
    return found


def _is_nsfs(st: os.stat_result, run_dir: Path) -> bool:
    # A namespace bind mount sits on nsfs, a different device from the
    # directory holding it; a plain file (ip netns add interrupted, or a
    # stale name) is on the directory's own device.
    try:
        return st.st_dev != os.stat(run_dir).st_dev
    except OSError:
        return False
