"""The spelling of map keys: what the compiler writes and the decision replay looks up."""

from __future__ import annotations

import pytest

from enforcer.bpf import abi
from enforcer.enforce import keys


def test_a_path_is_keyed_with_its_nul_and_a_directory_with_one_trailing_slash() -> None:
    assert keys.path_key("/bin/sh") == "/bin/sh\0"
    assert keys.dir_key("/tmp") == "/tmp/"
    assert keys.dir_key("/tmp/") == "/tmp/"
    assert keys.dir_key("/") == "/"


@pytest.mark.parametrize(
    ("given", "path"), [("/tmp/", "/tmp"), ("/tmp", "/tmp"), ("/var/tmp//", "/var/tmp"), ("/", "/")]
)
def test_a_directory_path_has_no_trailing_slash_but_the_root_keeps_its_own(
    given: str, path: str
) -> None:
    assert keys.dir_path(given) == path
    assert keys.dir_key(keys.dir_path(given)) == keys.dir_key(given)


def test_dirs_above_a_key_are_its_directory_prefixes_shallowest_first() -> None:
    assert list(keys.dirs_above("/usr/bin/sh\0")) == ["/", "/usr/", "/usr/bin/"]
    assert list(keys.dirs_above("/usr/bin/")) == ["/", "/usr/"]
    assert list(keys.dirs_above("/")) == []


def test_the_bounds_leave_room_for_what_the_kernel_keys_add() -> None:
    assert keys.MAX_NAME_BYTES == abi.NAME_LEN - 1
    assert keys.utf8_len(keys.path_key("/" + "p" * (keys.MAX_PATH_BYTES - 1))) < abi.PATH_LEN
    longest_dir = "/" + "d" * (keys.MAX_DIR_BYTES - 1)
    assert keys.utf8_len(keys.path_key(keys.dir_key(longest_dir))) < abi.PATH_LEN
    assert keys.utf8_len("é") == 2
