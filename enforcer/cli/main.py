"""The `enforcer` command."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from enforcer.cli import printing
from enforcer.errors import EnforcerError
from enforcer.kernel.backends import Backend
from enforcer.service import logs
from enforcer.service.control import DEFAULT_SOCKET, ask, ask_stream
from enforcer.service.protocol import (
    ContainersReply,
    DenialEvent,
    EventsReply,
    StatsReply,
    StatusReply,
    dump,
)

# Each command imports what only it needs (policies, bcc, containers) in its
# own body: `enforcer status` or `stats` must not pay for pydantic and the
# policy model.

T = TypeVar("T")
WATCH_INTERVAL_S = 1.0
BACKENDS = click.Choice([b.value for b in Backend])
socket_option = click.option(
    "--socket", "socket_path", type=click.Path(path_type=Path), default=DEFAULT_SOCKET,
    show_default=True, help="The daemon's control socket.",
)  # fmt: skip
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object, for scripts.")
pin_dir_option = click.option(
    "--pin-dir", type=click.Path(path_type=Path), default=Path("/sys/fs/bpf/enforcer"),
    show_default=True,
    help="bpffs directory where the counters, and the programs that outlive the daemon, are kept.",
)  # fmt: skip
backend_option = click.option(
    "--backend", type=BACKENDS, default="auto", show_default=True,
    help="How to hook exec: BPF LSM, kprobes, syscall tracepoints, or the best this kernel has.",
)  # fmt: skip


@click.group()
@click.option("--log-json", is_flag=True, help="Log one JSON object per line.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def main(log_json: bool, verbose: bool) -> None:
    """Stop forbidden programs from running inside selected containers."""
    logs.setup(json_lines=log_json, verbose=verbose)


@main.command()
@click.option(
    "--policies", "policy_paths", type=click.Path(path_type=Path), multiple=True,
    default=[Path("/etc/enforcer/policies")], show_default=True,
    help="Policy file or directory (repeatable).",
)  # fmt: skip
@backend_option
@socket_option
@pin_dir_option
@click.option(
    "--state-dir", type=click.Path(path_type=Path), default=Path("/var/lib/enforcer"),
    show_default=True, help="Where the names behind the kept counters are saved.",
)  # fmt: skip
@click.option(
    "--bpf-cache", "bpf_cache", type=click.Path(path_type=Path),
    default=Path("/var/cache/enforcer/bpf"), show_default=True,
    help="Where the compiled BPF program is kept: a start that finds it there skips the compile.",
)  # fmt: skip
@click.option(
    "--metrics",
    metavar="ADDR",
    help="Serve Prometheus metrics on ADDR (host:port); off by default.",
)
@click.option(
    "--event-log", metavar="TARGET",
    help="Also write each denial as a JSON line to TARGET: a file, 'journal' or 'stderr'.",
)  # fmt: skip
@click.option(
    "--keep-on-exit", is_flag=True,
    help="Leave the programs enforcing when the daemon stops, for its next start to take over "
    "(a crash always does); `enforcer unload` ends them.",
)  # fmt: skip
@click.option(
    "--hold-grace", "hold_grace_s", type=click.FloatRange(min=0), default=60.0,
    show_default=True, metavar="SECONDS",
    help="After the daemon is gone this long, new containers' first execs are no longer held "
    "for it to check.",
)  # fmt: skip
@click.option(
    "--hold-after-stop", "hold_after_stop_s", type=click.FloatRange(min=0), metavar="SECONDS",
    help="With --keep-on-exit, how long after a stop new containers' first execs are still "
    "held (default: --hold-grace). 0 in a pod: the next agent starts in a new container; "
    "then the holding also ends when the daemon is killed.",
)  # fmt: skip
def run(
    *,
    policy_paths: tuple[Path, ...],
    backend: str,
    socket_path: Path,
    pin_dir: Path,
    state_dir: Path,
    bpf_cache: Path,
    metrics: str | None,
    event_log: str | None,
    keep_on_exit: bool,
    hold_grace_s: float,
    hold_after_stop_s: float | None,
) -> None:
    """Run the enforcer in the foreground until SIGTERM or Ctrl-C (SIGHUP reloads)."""
    from enforcer.policy.loader import load_policies  # noqa: PLC0415
    from enforcer.service.daemon import Daemon, DaemonOptions  # noqa: PLC0415

    options = DaemonOptions(
        load=lambda: load_policies(policy_paths),
        backend=Backend(backend),
        socket_path=socket_path,
        watch=policy_paths,
        pin_dir=pin_dir,
        state_dir=state_dir,
        bpf_cache=bpf_cache,
        metrics=metrics,
        event_log=event_log,
        keep_on_exit=keep_on_exit,
        hold_grace_s=hold_grace_s,
        hold_after_stop_s=hold_after_stop_s,
    )
    _exit_on_error(lambda: Daemon(options).run())


@main.command()
@pin_dir_option
def unload(pin_dir: Path) -> None:
    """End enforcement by the programs a stopped or crashed daemon left in the kernel."""
    from enforcer.bpf.pins import PinDir  # noqa: PLC0415

    def act() -> None:
        done = PinDir(pin_dir).unload()
        if not done.generations:
            click.echo(f"no program was left enforcing in {pin_dir}")
        else:
            click.echo(f"unloaded the programs in {pin_dir}; {done.released} held execs let go")

    _exit_on_error(act)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def check(paths: tuple[Path, ...]) -> None:
    """Validate policy files or directories; exit 1 listing every problem.

    Besides each file, the policies are checked together: one name per policy, and room in the
    kernel's maps for all of them in a container they all select.
    """
    from enforcer.policy.capacity import set_problems  # noqa: PLC0415
    from enforcer.policy.loader import load_policies  # noqa: PLC0415
    from enforcer.policy.problems import printable  # noqa: PLC0415

    result = load_policies(paths, check_set=set_problems)
    for problem in result.problems:
        click.echo(str(problem), err=True)
    if not result.ok:
        sys.exit(1)
    for loaded in result.policies:
        click.echo(printable(f"ok  {loaded.source}:{loaded.line}  {loaded.policy.name}"))
    click.echo(f"{len(result.policies)} policies valid")


@main.command()
@json_option
@click.option("--watch", is_flag=True, help="Refresh once a second until Ctrl-C.")
@socket_option
def stats(as_json: bool, watch: bool, socket_path: Path) -> None:
    """Blocked and audited counts per policy, rule, container, program and caller."""
    while True:
        result = _ask(socket_path, "stats", StatsReply)
        if as_json:
            click.echo(json.dumps(dump(result), indent=None if watch else 2))
        else:
            if watch:
                click.clear()
                click.echo(f"{time.strftime('%H:%M:%S')}  (Ctrl-C to stop)")
            printing.print_stats(result)
        if not watch:
            return
        try:
            time.sleep(WATCH_INTERVAL_S)
        except KeyboardInterrupt:
            return


@main.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing denials as they happen.")
@json_option
@socket_option
def events(follow: bool, as_json: bool, socket_path: Path) -> None:
    """Denials: time, policy, rule, container, pid, program and arguments."""
    if not as_json:
        click.echo(printing.EVENT_HEADER)
    try:
        if follow:
            for denial in ask_stream(socket_path, "events", DenialEvent, follow=True):
                _print_event(denial, as_json)
        else:
            for denial in _ask(socket_path, "events", EventsReply).events:
                _print_event(denial, as_json)
    except EnforcerError as e:
        click.echo(f"enforcer: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        return


def _print_event(denial: DenialEvent, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(dump(denial)))
    else:
        printing.print_event(denial)


@main.command()
@json_option
@socket_option
def containers(as_json: bool, socket_path: Path) -> None:
    """The containers the daemon sees, and the policies that select each."""
    found = _ask(socket_path, "containers", ContainersReply)
    if as_json:
        click.echo(json.dumps([dump(c) for c in found.containers], indent=2))
    else:
        printing.print_containers(found)


@main.command()
@json_option
@socket_option
def status(as_json: bool, socket_path: Path) -> None:
    """Backend, kernel, policies and selected containers; exit 0 only when enforcing."""
    result = _ask(socket_path, "status", StatusReply)
    if as_json:
        click.echo(json.dumps(dump(result), indent=2))
    else:
        printing.print_status(result)
    sys.exit(0 if result.enforcing else 1)


@main.command()
@click.option(
    "--container", "container_ref", required=True, help="Container id, unique prefix or name."
)
@click.argument("names", nargs=-1, required=True)
@backend_option
def block(container_ref: str, names: tuple[str, ...], backend: str) -> None:
    """Kill NAMES run inside one container until Ctrl-C, printing each kill."""
    from enforcer.cli.quick import block_in_container  # noqa: PLC0415

    _exit_on_error(lambda: block_in_container(container_ref, names, Backend(backend)))


@main.command()
@click.option(
    "--interval", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
    help="Seconds between lines.",
)  # fmt: skip
def count(interval: float) -> None:
    """Count execve calls host-wide, printing the running total every --interval seconds."""
    from enforcer.cli.quick import count_execs  # noqa: PLC0415

    _exit_on_error(lambda: count_execs(interval))


@main.command()
@backend_option
def trace(backend: str) -> None:
    """Print every exec live: time, pid, comm, container, file."""
    from enforcer.cli.quick import trace_execs  # noqa: PLC0415

    _exit_on_error(lambda: trace_execs(Backend(backend)))


@main.command()
@click.option("--container", "container_ref", help="Container id, unique prefix or name.")
@click.option("--image", help="Every container whose image matches (a pattern, as in policies).")
@click.option("--for", "duration", default="60s", show_default=True,
              help="How long to watch: 90s, 5m, 1h (Ctrl-C ends it sooner).")  # fmt: skip
@click.option("--output", "-o", type=click.Path(path_type=Path), help="File to write (stdout).")
@backend_option
def learn(
    container_ref: str | None, image: str | None, duration: str, output: Path | None, backend: str
) -> None:
    """Watch what runs in a container and write an allowlist policy (audit mode) for it."""
    from enforcer.cli import learn as learning  # noqa: PLC0415

    def act() -> int:
        target = learning.resolve_target(container_ref, image)
        return learning.learn(target, learning.parse_duration(duration), Backend(backend), output)

    _exit_on_error(act)


@main.command()
def schema() -> None:
    """Print the JSON Schema of an ExecPolicy, for editors (yaml-language-server) and CI."""
    from enforcer.policy.schema import policy_schema  # noqa: PLC0415

    click.echo(json.dumps(policy_schema(), indent=2))


@main.command()
@json_option
def doctor(as_json: bool) -> None:
    """What this kernel offers, the backend enforcer would use and why; exit 0 if it can enforce."""
    from enforcer.kernel.doctor import examine  # noqa: PLC0415

    diagnosis = examine()
    if as_json:
        click.echo(json.dumps(diagnosis.to_json(), indent=2))
    else:
        printing.print_diagnosis(diagnosis)
    sys.exit(0 if diagnosis.enforcement_possible else 1)


def _ask(socket_path: Path, command: str, reply: type[T]) -> T:
    try:
        return ask(socket_path, command, reply)
    except EnforcerError as e:
        click.echo(f"enforcer: {e}", err=True)
        sys.exit(2)


def _exit_on_error(action: Callable[[], int | None]) -> None:
    try:
        code = action()
    except EnforcerError as e:
        click.echo(f"enforcer: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        code = 0
    sys.exit(code or 0)
