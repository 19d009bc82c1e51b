"""The `enforcer` command and its one-shot tools."""
