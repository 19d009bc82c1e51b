"""The daemon and what it talks through: control socket, systemd, metrics, logs."""
