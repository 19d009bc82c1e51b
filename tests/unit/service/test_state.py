"""The ids kept on disk between runs: trusted for the same counters map only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enforcer.enforce.ids import Ids, Target, TargetKind
from enforcer.service.state import IDS_FILE, load_ids, save_ids


def numbered() -> Ids:
    ids = Ids()
    ids.policies.number("no-shells")
    ids.policies.number("no-recon")
    ids.rules.number(("no-recon", "nc"))
    ids.targets.number(Target(TargetKind.NAME, "nc"))
    ids.targets.number(Target(TargetKind.DIR, "/tmp/"))
    return ids


def test_saved_ids_come_back_with_the_same_numbers(tmp_path: Path) -> None:
    saved = numbered()
    save_ids(tmp_path / "state", saved, counters_map_id=17)

    loaded = load_ids(tmp_path / "state", counters_map_id=17)

    assert loaded is not None
    assert loaded.policies.items() == saved.policies.items()
    assert loaded.rules.items() == saved.rules.items()
    assert loaded.targets.items() == saved.targets.items()
    # A name numbered after the restore gets a number no saved name has.
    assert loaded.policies.number("new") == 3


def test_ids_of_another_counters_map_are_not_trusted(tmp_path: Path) -> None:
    save_ids(tmp_path, numbered(), counters_map_id=17)
    assert load_ids(tmp_path, counters_map_id=18) is None


def test_no_file_means_no_ids(tmp_path: Path) -> None:
    assert load_ids(tmp_path, counters_map_id=17) is None


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2"])
def test_a_damaged_file_is_ignored_with_a_warning(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / IDS_FILE).write_text(text)
    assert load_ids(tmp_path, counters_map_id=17) is None
    assert str(tmp_path / IDS_FILE) in caplog.text


def test_the_state_directory_is_root_only_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    state = tmp_path / "state"
    save_ids(state, numbered(), counters_map_id=17)
    assert state.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in state.iterdir()) == [IDS_FILE]
    assert json.loads((state / IDS_FILE).read_text())["counters_map_id"] == 17
