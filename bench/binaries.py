"""The C programs the benchmarks run, built with gcc at bench time."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.errors import PrerequisiteError

C_DIR = Path(__file__).resolve().parent / "c"


@dataclass(frozen=True)
class Binaries:
    """`spawn_loop` (N posix_spawn+wait of a program), `trivial` (exits 0) and
    `getppid_loop` (N getppid system calls)."""

    spawn_loop: Path
    trivial: Path
    getppid_loop: Path

    def copy_of_trivial(self, name: str) -> Path:
        """The trivial program under another name, beside it (for name-based rules)."""
        copy = self.trivial.parent / name
        shutil.copy2(self.trivial, copy)
        return copy


def build(out_dir: Path) -> Binaries:
    """Compiles the programs into out_dir; `trivial` static, so its exec loads nothing else."""
    if shutil.which("gcc") is None:
        raise PrerequisiteError("gcc is not installed: apt-get install gcc libc6-dev")
    return Binaries(
        spawn_loop=_compile("spawn_loop", out_dir, static=False),
        trivial=_compile("trivial", out_dir, static=True),
        getppid_loop=_compile("getppid_loop", out_dir, static=True),
    )


def _compile(name: str, out_dir: Path, *, static: bool) -> Path:
    out = out_dir / name
    argv = ["gcc", *(["-static"] if static else []), "-O2", "-Wall", "-Wextra", "-Werror"]
    result = subprocess.run(
        [*argv, "-o", str(out), str(C_DIR / f"{name}.c")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise PrerequisiteError(
            f"gcc could not build bench/c/{name}.c: {result.stderr.strip()} "
            "(a static build needs libc6-dev)"
        )
    return out
