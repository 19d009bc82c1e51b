"""The exceptions enforcer raises. Every message says what failed and what to do.

Every one is an EnforcerError: those here are shared by several modules, and
a module's own (a busy pin directory, a refused BPF program) is defined
beside the code that raises it (tests/unit/test_errors.py checks the tree).
"""

from __future__ import annotations


class EnforcerError(Exception):
    """Base class of every error enforcer raises on purpose."""


class PolicyError(EnforcerError):
    """Raised when policy files are invalid; carries every problem found.

    `problems` holds `enforcer.policy.problems.PolicyProblem` objects, each naming
    the file, the line, the field path and what to change.
    """

    def __init__(self, problems: list[object]) -> None:
        self.problems = problems
        lines = "\n".join(str(p) for p in problems)
        super().__init__(f"{len(problems)} policy problem(s):\n{lines}")


class CompileError(EnforcerError):
    """Raised when valid policies cannot fit the kernel's fixed-size maps."""


class KernelSupportError(EnforcerError):
    """Raised when the running kernel lacks something the chosen backend needs."""


class BpfLoadError(EnforcerError):
    """Raised when the BPF program fails to compile, load or attach."""


class MapWriteError(EnforcerError):
    """Raised when the kernel refuses a map write while policies switch; nothing changed."""


class ContainerLookupError(EnforcerError):
    """Raised when a container named on the command line cannot be found or is ambiguous."""


class DaemonUnavailableError(EnforcerError):
    """Raised by the CLI when the daemon's control socket cannot be reached."""
