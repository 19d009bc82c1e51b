"""The one-command demos: block in one container, count execs, trace execs.

Each loads its own copy of the exec program for as long as it runs, without
the daemon, the way the classic bcc examples do.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import click

from enforcer.bpf.records import KernelEvent
from enforcer.containers.inventory import discover, resolve_container
from enforcer.enforce.denials import Denial
from enforcer.enforce.engine import Engine
from enforcer.kernel.backends import Backend
from enforcer.kernel.preflight import prepare
from enforcer.policy.loader import LoadedPolicy, LoadResult
from enforcer.policy.model import ExecPolicy
from enforcer.service.daemon import Daemon, DaemonOptions

BLOCK_POLICY = "block-command"
# How often `trace` looks for new containers again when one cgroup keeps running unknown execs.
UNKNOWN_CGROUP_RECHECK_S = 1.0


def block_in_container(container_ref: str, names: tuple[str, ...], backend: Backend) -> int:
    """Kills `names` in one container until Ctrl-C, printing each kill."""
    container = resolve_container(container_ref, discover())
    policy = ExecPolicy.model_validate(
        {
            "apiVersion": "enforcer/v1",
            "kind": "ExecPolicy",
            "metadata": {"name": BLOCK_POLICY},
            "spec": {
                "mode": "enforce",
                "selector": {"containers": {"ids": [container.id]}},
                "rules": [{"name": "blocked", "action": "kill", "match": {"names": list(names)}}],
            },
        }
    )
    loaded = LoadResult(policies=(LoadedPolicy(policy, Path("<command line>"), 1),), problems=())

    def ready(_engine: Engine) -> None:
        click.echo(
            f"blocking {', '.join(names)} in container {container.short_id} "
            f"({container.runtime}); Ctrl-C to stop"
        )

    def killed(denial: Denial) -> None:
        click.echo(f"{time.strftime('%H:%M:%S')} {denial}")

    options = DaemonOptions(
        load=lambda: loaded,
        backend=backend,
        on_denial=killed,
        on_ready=ready,
        follow_new_cgroups=False,
    )
    return Daemon(options).run()


def trace_execs(backend: Backend) -> int:
    """Prints every exec on the host as it happens."""
    engine_ref: list[Engine] = []

    def ready(engine: Engine) -> None:
        engine_ref.append(engine)
        click.echo(f"{'TIME':8}  {'PID':>7}  {'COMM':16}  {'CONTAINER':12}  FILE")

    def on_exec(event: KernelEvent) -> None:
        # Containers started since are known from the kernel's cgroup events.
        container_id = engine_ref[0].owner(event.cgroup_id)[0] if engine_ref else "?"
        try:
            click.echo(
                f"{time.strftime('%H:%M:%S')}  {event.pid:>7}  {event.comm:16}  "
                f"{container_id[:12]:12}  {_shown_path(event.filename, event.invoked)}"
            )
        except BrokenPipeError:
            # Nobody reads any more (`enforcer trace | head`). bcc swallows exceptions raised
            # in event callbacks, so stop the way SIGTERM does.
            _discard_stdout()
            signal.raise_signal(signal.SIGTERM)

    options = DaemonOptions(
        load=lambda: LoadResult((), ()),
        backend=backend,
        on_ready=ready,
        on_exec=on_exec,
        trace_all=True,
        follow_new_cgroups=False,
    )
    return Daemon(options).run()


def count_execs(interval: float) -> int:
    """Prints `execve called N times` every `interval` seconds until Ctrl-C or SIGTERM."""
    facts, choice = prepare()
    from enforcer.bpf.program import ExecProgram  # noqa: PLC0415  (bcc after the mounts)

    program = ExecProgram(choice.backend, ring_buffer=facts.ring_buffer)
    stop: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        start = program.counters.exec_total()
        while not stop:
            time.sleep(interval)
            try:
                click.echo(f"execve called {program.counters.exec_total() - start} times")
            except BrokenPipeError:  # nobody reads any more (`enforcer count | head`)
                _discard_stdout()
                break
    finally:
        program.close()
    return 0


def _discard_stdout() -> None:
    """Sends later output, and the flush at exit, to /dev/null: stdout's reader is gone."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _shown_path(resolved: str, invoked: str) -> str:
    """The file that runs, and the path it was invoked by where that differs."""
    return resolved if invoked in ("", resolved) else f"{resolved} (invoked as {invoked})"
