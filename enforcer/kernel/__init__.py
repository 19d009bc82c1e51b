"""The running kernel: what it offers, its BTF and struct offsets, its mounts, doctor."""
