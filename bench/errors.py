"""Why a benchmark could not run or could not be trusted."""

from __future__ import annotations


class BenchError(Exception):
    """Base class: a benchmark stopped; the message says what failed and what to do."""


class PrerequisiteError(BenchError):
    """Raised when a tool, package or privilege the suite needs is missing."""


class MeasurementError(BenchError):
    """Raised when a measurement went wrong (a loop failed, a daemon did not start)."""
