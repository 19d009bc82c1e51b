"""`enforcer learn`: watch what runs in some containers, and write the allowlist that fits.

The exec program runs with no policy, reporting every exec (as `enforcer
trace` does); the files that ran in the chosen containers, resolved in their
roots, become one `allow` rule of a policy whose default is `kill`, written
in `mode: audit` for review. Where every program below a directory ran, the
directory stands for them (shorter, and exact for what is there now).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from enforcer.bpf import abi
from enforcer.bpf.records import KernelEvent
from enforcer.containers.inventory import discover, resolve_container
from enforcer.containers.model import Container
from enforcer.enforce.engine import Engine
from enforcer.errors import EnforcerError
from enforcer.kernel.backends import Backend
from enforcer.policy.images import image_matches
from enforcer.policy.loader import LoadResult
from enforcer.service.daemon import Daemon, DaemonOptions

# Most programs looked at below one directory when deciding whether it ran whole.
DIRECTORY_SCAN_LIMIT = 4096
# Directories that stand for their programs only when at least this many ran there.
MIN_PER_DIRECTORY = 2


class LearnError(EnforcerError):
    """Raised when there is nothing to learn from, or the duration cannot be read."""


@dataclass(frozen=True)
class Target:
    """What to learn: one container, or every container whose image matches."""

    container: Container | None = None
    image: str | None = None

    def selects(self, container: Container | None) -> bool:
        if container is None:
            return False
        if self.container is not None:
            return container.id == self.container.id
        return self.image is not None and image_matches(self.image, container.image)

    def selector(self) -> dict[str, Any]:
        if self.container is not None:
            return {"containers": {"ids": [self.container.id]}}
        return {"containers": {"images": [self.image]}}

    def describe(self, seen: int) -> str:
        """What was watched, for the comments: `seen` is how many containers ran something."""
        if self.container is not None:
            c = self.container
            return f"container {c.short_id} ({c.runtime}{', ' + c.name if c.name else ''})"
        return f"{seen} containers of image {self.image}"


@dataclass
class Observed:
    """The execs seen so far: resolved path -> how many times, and each container's root."""

    runs: Counter[str] = field(default_factory=Counter)
    roots: dict[str, Path] = field(default_factory=dict)
    containers: set[str] = field(default_factory=set)


def parse_duration(text: str) -> float:
    """`90`, `90s`, `5m` or `1h` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise LearnError(f"--for {text!r}: give a duration such as 90s, 5m or 1h") from None
    if seconds <= 0:
        raise LearnError(f"--for {text!r}: the duration must be more than 0")
    return seconds


def learn(target: Target, seconds: float, backend: Backend, output: Path | None) -> int:
    """Watches for `seconds` (or until Ctrl-C), then writes the policy to `output` or stdout."""
    observed = Observed()
    engine_ref: list[Engine] = []
    started = time.time()

    def on_exec(event: KernelEvent) -> None:
        if not engine_ref:
            return
        owner = engine_ref[0].container_of(event.cgroup_id)
        if target.selects(owner) and event.filename.startswith("/"):
            assert owner is not None
            observed.runs[event.filename] += 1
            observed.containers.add(owner.id)
            if owner.pid is not None:
                observed.roots.setdefault(owner.id, Path(f"/proc/{owner.pid}/root"))

    options = DaemonOptions(
        load=lambda: LoadResult((), ()),
        backend=backend,
        on_ready=engine_ref.append,
        on_exec=on_exec,
        trace_all=True,
        follow_new_cgroups=False,
    )
    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.daemon = True
    timer.start()
    try:
        code = Daemon(options).run()
    finally:
        timer.cancel()
    if code != 0:
        return code
    text = policy_text(target, observed, started, time.time() - started)
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)
    return 0


def resolve_target(container_ref: str | None, image: str | None) -> Target:
    if (container_ref is None) == (image is None):
        raise LearnError("say what to learn: --container REF or --image PATTERN (one of them)")
    if container_ref is not None:
        return Target(container=resolve_container(container_ref, discover()))
    return Target(image=image)


def policy_text(target: Target, observed: Observed, started: float, seconds: float) -> str:
    """The allowlist policy, with comments saying what was seen, where and for how long."""
    paths, dirs = group(observed.runs, _root_lister(observed.roots))
    too_long = sorted(p for p in paths if len(p.encode()) > abi.PATH_LEN - 2)
    paths = [p for p in paths if p not in too_long]
    name = _policy_name(target)
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started))
    header = [
        f"Learned by `enforcer learn` on {socket.gethostname()} from {when}, for {seconds:.0f} s:",
        f"{sum(observed.runs.values())} execs of {len(observed.runs)} programs in "
        f"{target.describe(len(observed.containers))}.",
        *(f"  {count:6d}  {path}" for path, count in sorted(observed.runs.items())),
        *(f"not listed, longer than a path rule holds: {p}" for p in too_long),
        "Review it: run the workload with it in audit mode, check `enforcer stats` for",
        "(default) hits, then set mode: enforce.",
    ]
    match: dict[str, list[str]] = {}
    if paths:
        match["paths"] = paths
    if dirs:
        match["dirs"] = dirs
    body: dict[str, Any] = {
        "apiVersion": "enforcer/v1",
        "kind": "ExecPolicy",
        "metadata": {"name": name},
        "spec": {
            "mode": "audit",
            "selector": target.selector(),
            "default": "kill",
            "rules": [{"name": "learned", "action": "allow", "match": match or {"paths": []}}],
        },
    }
    out = io.StringIO()
    writer = YAML()
    writer.default_flow_style = False
    writer.dump(body, out)
    return "".join(f"# {line}\n" for line in header) + out.getvalue()


def group(
    runs: Mapping[str, int], list_programs: Callable[[str], list[str] | None]
) -> tuple[list[str], list[str]]:
    """(paths, dirs): a directory replaces its paths where every program below it ran.

    `list_programs(directory)` gives the executable files below a directory
    in the container's root, or None when it cannot tell (then paths stay).
    """
    seen = set(runs)
    by_parent: dict[str, list[str]] = {}
    for path in seen:
        by_parent.setdefault(path.rsplit("/", 1)[0] or "/", []).append(path)
    dirs: list[str] = []
    for parent, members in sorted(by_parent.items()):
        if len(members) < MIN_PER_DIRECTORY or parent == "/":
            continue
        present = list_programs(parent)
        if present is not None and present and set(present) <= seen:
            dirs.append(parent)
    covered = {p for p in seen if any(p.startswith(d + "/") for d in dirs)}
    return sorted(seen - covered), dirs


def _root_lister(roots: Mapping[str, Path]) -> Callable[[str], list[str] | None]:
    """Lists programs below a directory in every learned container's root (all must agree)."""

    def list_programs(directory: str) -> list[str] | None:
        found: set[str] = set()
        if not roots:
            return None
        for root in roots.values():
            listed = _programs_below(root, directory)
            if listed is None:
                return None
            found.update(listed)
        return sorted(found)

    return list_programs


def _programs_below(root: Path, directory: str) -> list[str] | None:
    programs: list[str] = []
    base = root / directory.lstrip("/")
    try:
        for dirpath, _dirs, files in os.walk(base, followlinks=False):
            for name in files:
                full = Path(dirpath) / name
                if full.is_file() and not full.is_symlink() and os.access(full, os.X_OK):
                    programs.append("/" + str(full.relative_to(root)))
                if len(programs) > DIRECTORY_SCAN_LIMIT:
                    return None
    except OSError:
        return None
    return programs


def _policy_name(target: Target) -> str:
    raw = target.container.name or target.container.short_id if target.container else target.image
    cleaned = "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in (raw or "").lower())
    return f"learned-{cleaned.strip('-.')[:40] or 'containers'}"
