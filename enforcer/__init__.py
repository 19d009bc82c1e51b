"""enforcer: stop forbidden programs from running inside selected containers."""

__version__ = "0.1.0"
