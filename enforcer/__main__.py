"""`python -m enforcer` is the `enforcer` command."""

from enforcer.cli import main

main()
