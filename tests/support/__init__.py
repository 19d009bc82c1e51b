"""What the integration tests and the benchmarks share: waiting, the daemon, policies, skips.

Importable as `tests.support` from pytest (pyproject.toml puts the checkout
on its path) and from `python -m bench` run at the checkout's root. Typed
strictly: mypy checks it through bench.
"""
