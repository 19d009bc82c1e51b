"""Every error enforcer defines is an EnforcerError, so one `except` catches them all."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import enforcer
from enforcer.errors import EnforcerError

# The one module that imports bcc (and LLVM with it): it defines no error.
SKIPPED = {"enforcer.bpf.bcc_build", "enforcer.__main__"}


def error_classes() -> list[type[BaseException]]:
    found = []
    for module_info in pkgutil.walk_packages(enforcer.__path__, "enforcer."):
        if module_info.name in SKIPPED:
            continue
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if name.startswith("_") or not inspect.isclass(value):
                continue
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found.append(value)
    return found


@pytest.mark.parametrize("error", error_classes(), ids=lambda e: f"{e.__module__}.{e.__name__}")
def test_every_public_error_is_an_enforcer_error(error: type[BaseException]) -> None:
    assert issubclass(error, EnforcerError)


def test_the_walk_finds_errors_in_several_modules() -> None:
    assert len({e.__module__ for e in error_classes()}) >= 8
