"""Everything one run measured, the checks it passed, and its JSON form."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.condition_cost import ConditionCost
from bench.exec_overhead import ExecOverhead
from bench.machine import Machine
from bench.neighbours import Quietness
from bench.race import Race
from bench.settings import Settings
from bench.start_reload import StartReload
from bench.storm import Storm
from bench.syscall_cost import SyscallCost


@dataclass
class Results:
    machine: Machine
    settings: Settings
    exec_overhead: ExecOverhead | None = None
    condition_cost: ConditionCost | None = None
    syscall_cost: SyscallCost | None = None
    start_reload: StartReload | None = None
    storm: Storm | None = None
    race: Race | None = None
    # Section name -> why it could not be measured.
    errors: dict[str, str] = field(default_factory=dict)
    # Whether other work ran beside the measurements (see neighbours.py).
    quietness: Quietness | None = None

    def failed_checks(self) -> list[str]:
        """What the figures say is wrong, beyond a section that could not run."""
        failed = []
        if self.storm is not None:
            if not self.storm.all_killed:
                failed.append(f"storm: {self.storm.not_killed} attempts were not killed")
            if not self.storm.counters_exact:
                failed.append(
                    f"storm: the daemon counted {self.storm.counted} of "
                    f"{self.storm.attempts} attempts"
                )
        if self.condition_cost is not None:
            failed += self.condition_cost.failed_checks()
        if self.race is not None and (self.race.escapes or self.race.other):
            failed.append(
                f"race: {self.race.escapes} entrypoints escaped, {self.race.other} other outcomes"
            )
        return failed

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "failed_checks": self.failed_checks()}

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
