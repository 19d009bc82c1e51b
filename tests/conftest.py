"""Skips by marker: a test marked `root`, `podman` or `runc` runs only where that is here.

Each skip says why (pytest -ra prints the reasons): never a silent skip.
"""

from __future__ import annotations

import pytest

from tests.support.prerequisites import BY_MARKER


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers():
        check = BY_MARKER.get(marker.name)
        if check is not None and (reason := check()) is not None:
            pytest.skip(f"marked {marker.name}: {reason}")
