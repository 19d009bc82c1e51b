"""`python -m enforcer` is the `enforcer` command."""

from enforcer.cli.main import main

main()
