"""Policies onto containers: map contents, held-exec decisions, the engine, lifecycle."""
