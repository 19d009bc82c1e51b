"""How much each benchmark does in a full, quick and smoke run."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# (rules, selected containers): every pair of these, as issue 6 asks.
RULE_COUNTS = (1, 100, 10_000)
CONTAINER_COUNTS = (1, 100, 1_000)


class Mode(StrEnum):
    FULL = "full"
    QUICK = "quick"
    SMOKE = "smoke"


@dataclass(frozen=True)
class Settings:
    mode: Mode
    # Exec overhead: rounds of (baseline loop, loop with BPF attached), and execs per loop.
    rounds: int
    execs: int
    configs: tuple[tuple[int, int], ...]
    # Start and reload: how many cold starts, and how many policy changes.
    starts: int
    reloads: int
    # Syscall cost: rounds of (baseline loop, loop with BPF attached), getppid calls per loop.
    syscall_rounds: int
    syscall_calls: int
    # Exec storm: attempts in all, split over `storm_loops` parallel loops.
    storm_attempts: int
    storm_loops: int
    # New-container race: one-shot containers, and detached ones timed until listed.
    race_containers: int
    race_appearances: int
    # Rule conditions: the plain rules of each configuration (exec loops as above).
    condition_rules: tuple[int, ...]


ALL_CONFIGS = tuple((r, c) for r in RULE_COUNTS for c in CONTAINER_COUNTS)

SETTINGS = {
    Mode.FULL: Settings(
        mode=Mode.FULL, rounds=9, execs=1000, configs=ALL_CONFIGS, syscall_rounds=9,
        syscall_calls=5_000_000, starts=7, reloads=10, storm_attempts=20_000, storm_loops=2,
        race_containers=200, race_appearances=20, condition_rules=(1, 100),
    ),
    Mode.QUICK: Settings(
        mode=Mode.QUICK, rounds=3, execs=500, configs=ALL_CONFIGS, syscall_rounds=5,
        syscall_calls=2_000_000, starts=3, reloads=4, storm_attempts=20_000, storm_loops=2,
        race_containers=20, race_appearances=5, condition_rules=(1, 100),
    ),
    Mode.SMOKE: Settings(
        mode=Mode.SMOKE, rounds=1, execs=20, configs=((1, 1), (10_000, 1_000)),
        syscall_rounds=1, syscall_calls=100_000, starts=1, reloads=2, storm_attempts=200,
        storm_loops=2, race_containers=1, race_appearances=1, condition_rules=(1,),
    ),
}  # fmt: skip
