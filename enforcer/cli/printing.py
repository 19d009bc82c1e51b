"""What the CLI prints for people: the daemon's replies as lines and tables.

`--json` prints the reply itself (service/protocol.py's `dump`); these are
the other views, one function per command.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from enforcer.cli import table
from enforcer.service.protocol import ContainersReply, DenialEvent, StatsReply, StatusReply

if TYPE_CHECKING:  # `enforcer doctor` imports it; the other commands need not
    from enforcer.kernel.doctor import Diagnosis

EVENT_HEADER = (
    f"{'TIME':19}  {'ACTION':7}  {'POLICY/RULE':28}  {'CONTAINER':26}  {'PID':>7}  PROGRAM"
)
STATS_HEADER = ("POLICY", "RULE", "CONTAINER", "PROGRAM", "CALLER", "BLOCKED", "AUDITED")


def print_event(denial: DenialEvent) -> None:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(denial.time))
    where = container_label(denial.container_id, denial.container_name)
    argv = " ".join(denial.argv[1:])
    invoked = denial.invoked
    program = f"{denial.filename} (invoked as {invoked})" if invoked else denial.filename
    called = f"  (called by {denial.caller})" if denial.caller else ""
    click.echo(
        f"{when:19}  {denial.action:7}  {denial.policy + '/' + denial.rule:28}  "
        f"{where:26}  {denial.pid:>7}  {program} {argv}".rstrip()
        + called
    )


def print_stats(stats: StatsReply) -> None:
    click.echo(table.render(STATS_HEADER, list(_stat_rows(stats))))


def _stat_rows(stats: StatsReply) -> Iterator[list[object]]:
    for policy in stats.policies:
        if not policy.rules:
            yield [policy.name, "-", "-", "-", "-", 0, 0]
        for rule in policy.rules:
            for container in rule.containers:
                where = container_label(container.id, container.name)
                for program in container.programs:
                    yield [policy.name, rule.name, where, program.program,
                           program.caller or "-", program.blocked, program.audited]  # fmt: skip


def container_label(container_id: str, name: str) -> str:
    short = container_id[:12]
    return f"{short} ({name})" if name and name != container_id else short


def print_containers(found: ContainersReply) -> None:
    rows = [
        [c.id[:12], c.name or "-", c.image or "-", c.runtime,
         c.cgroup_id if c.cgroup_id is not None else "-", ", ".join(c.policies) or "-"]
        for c in found.containers
    ]  # fmt: skip
    header = ["CONTAINER", "NAME", "IMAGE", "RUNTIME", "CGROUP", "POLICIES"]
    click.echo(table.render(header, rows))


def print_status(status: StatusReply) -> None:
    state = "enforcing" if status.enforcing else "NOT enforcing"
    click.echo(f"{state}  backend={status.backend} ({status.backend_reason})")
    click.echo(f"kernel {status.kernel}, up {status.uptime_seconds} s, "
               f"{status.containers_known} containers known, "
               f"{status.event_drops} events dropped")  # fmt: skip
    rows = []
    for policy in status.policies:
        selected = [container_label(c.id, c.name) for c in policy.containers]
        if policy.host:
            selected.append("host")
        selected += [f"? {u}" for u in policy.unresolved]
        rows.append([policy.name, policy.mode, policy.rules, ", ".join(selected) or "-"])
    click.echo(table.render(["POLICY", "MODE", "RULES", "SELECTS"], rows))
    for problem in status.problems:
        click.echo(f"problem: {problem}", err=True)
    for warning in status.warnings:
        click.echo(f"warning: {warning}", err=True)
    full = {what: n for what, n in status.full_maps.items() if n}
    if full:
        counts = ", ".join(f"{what} {n}" for what, n in sorted(full.items()))
        click.echo(f"maps were full: {counts}", err=True)
    if status.enforce_error:
        click.echo(f"not applied, the policies above stay in force: {status.enforce_error}",
                   err=True)  # fmt: skip


def print_diagnosis(diagnosis: Diagnosis) -> None:
    click.echo(f"kernel {diagnosis.release}")
    rows = [[c.name, c.label if c.ok else c.label.upper(), c.seen] for c in diagnosis.checks]
    click.echo(table.render(["CHECK", "STATE", "SEEN"], rows))
    click.echo("\nbackends, best first:")
    for verdict in diagnosis.backends:
        state = "usable" if verdict.usable else "no: " + "; ".join(verdict.problems)
        click.echo(f"  {verdict.backend:<10}  {state}")
    missing = [c for c in diagnosis.checks if not c.ok]
    if missing:
        click.echo("\nwhat is missing, what it costs, and the fix:")
    for check in missing:
        click.echo(f"  {check.name}: {check.consequence}")
        click.echo(f"    fix: {check.fix}")
    click.echo("")
    if not diagnosis.root:
        click.echo("backend: unknown until run as root")
    elif diagnosis.choice is None:
        click.echo("backend: none; enforcer cannot enforce on this kernel")
    else:
        click.echo(f"backend: {diagnosis.choice.backend} ({diagnosis.choice.reason})")
