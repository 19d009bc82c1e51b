"""How a policy's program names, paths and dirs are spelled as keys of the kernel's maps.

The one place that knows the spelling the BPF side looks up (bpf/enforcer.h: rule_names,
rule_paths, caller_names, caller_paths). A name is its own key. A path is keyed with its NUL,
so that in the LPM trie it matches that file only; a directory with a trailing '/', so that it
is a prefix of every path below it. The compiler writes these keys, enforcer.enforce.decision
replays the kernel's lookup over them, and enforcer.policy.fields refuses entries too long for
them.
"""

from __future__ import annotations

from collections.abc import Iterator

from enforcer.bpf import abi

# Bounds from the sizes the kernel side keys on (abi, from bpf/enforcer.h), in
# UTF-8 bytes: a basename key and a path key each hold a NUL.
MAX_NAME_BYTES = abi.NAME_LEN - 1
MAX_PATH_BYTES = abi.PATH_LEN - 2
# A directory is stored with a trailing '/' (so it matches what lies below) plus the NUL.
MAX_DIR_BYTES = abi.PATH_LEN - 3


def utf8_len(text: str) -> int:
    """The bytes `text` takes in a key (text without lone surrogates, as policies hold)."""
    return len(text.encode("utf-8"))


def path_key(path: str) -> str:
    """The key of one file's path: the path and its NUL."""
    return path + "\0"


def dir_key(directory: str) -> str:
    """The key of a directory: its path and one trailing '/' ("/" for the root)."""
    return directory.rstrip("/") + "/"


def dir_path(directory: str) -> str:
    """A directory's own path, as policies hold it and roots resolve it: no trailing '/'
    ("/" for the root)."""
    return directory.rstrip("/") or "/"


def dirs_above(key: str) -> Iterator[str]:
    """The directory keys that are prefixes of `key`, itself excepted, shallowest first."""
    for cut in range(len(key) - 1):
        if key[cut] == "/":
            yield key[: cut + 1]
