"""The event log as an operator reads it: real files, real renames, real stderr."""

from __future__ import annotations

import json
import os
import stat
import sys
import types
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from enforcer.errors import EnforcerError
from enforcer.service.eventlog import (
    DENIAL_MESSAGE_ID,
    FILE_MODE,
    EventLogError,
    FileEventLog,
    JournalEventLog,
    StderrEventLog,
    open_event_log,
)

# Denial.to_json() of a killed exec; `time` is seconds since the epoch.
DENIAL: dict[str, object] = {
    "time": 1_700_000_000.25,
    "policy": "no-recon",
    "rule": "recon",
    "action": "kill",
    "container_id": "3f4e5d6c7b8a",
    "container_name": "web",
    "cgroup_id": 4242,
    "pid": 31337,
    "uid": 0,
    "comm": "sh",
    "filename": "/usr/bin/id",
    "target": "id",
}


def lines(path: Path) -> list[dict[str, object]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def test_file_gets_one_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"

    with open_event_log(str(path)) as log:
        assert isinstance(log, FileEventLog)
        log.write(DENIAL)
        log.write({**DENIAL, "action": "audit", "argv": ["id", "-u"]})

    first, second = lines(path)
    assert first == {**DENIAL, "time": "2023-11-14T22:13:20.250Z"}
    assert next(iter(first)) == "time"
    assert second["action"] == "audit"
    assert second["argv"] == ["id", "-u"]


def test_each_line_is_on_disk_when_written(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = open_event_log(str(path))

    log.write(DENIAL)

    assert len(lines(path)) == 1  # before close: line buffered
    log.close()


def test_event_without_time_gets_the_current_time(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    before = datetime.now().astimezone()

    with open_event_log(str(path)) as log:
        log.write({"policy": "no-recon"})

    (line,) = lines(path)
    stamp = str(line["time"])
    assert stamp.endswith("Z")
    when = datetime.fromisoformat(stamp)
    offset = when.utcoffset()
    assert offset is not None and offset.total_seconds() == 0
    assert abs((when - before).total_seconds()) < 60


def test_values_json_cannot_encode_are_written_as_text(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"

    with open_event_log(str(path)) as log:
        log.write({"time": 0, "source": Path("/etc/enforcer/policies/a.yaml"), "ok": True})

    assert lines(path) == [
        {"time": "1970-01-01T00:00:00.000Z", "source": "/etc/enforcer/policies/a.yaml", "ok": True}
    ]


def test_new_file_is_created_0640_whatever_the_umask(tmp_path: Path, umask_077: None) -> None:
    path = tmp_path / "events.jsonl"

    open_event_log(str(path)).close()

    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE == 0o640


def test_existing_file_is_appended_to_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"earlier": 1}\n')
    path.chmod(0o600)

    with open_event_log(str(path)) as log:
        log.write(DENIAL)

    assert [line.get("earlier") for line in lines(path)] == [1, None]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reopen_after_logrotate_renamed_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    rotated = tmp_path / "events.jsonl.1"
    log = open_event_log(str(path))
    log.write({**DENIAL, "pid": 1})

    path.rename(rotated)
    log.write({**DENIAL, "pid": 2})  # still the old file, as logrotate expects
    log.reopen()
    log.write({**DENIAL, "pid": 3})
    log.close()

    assert [line["pid"] for line in lines(rotated)] == [1, 2]
    assert [line["pid"] for line in lines(path)] == [3]
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE


def test_relative_path_stays_where_it_was_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    log = open_event_log("events.jsonl")
    (tmp_path / "events.jsonl").rename(tmp_path / "events.jsonl.1")

    monkeypatch.chdir("/")
    log.reopen()
    log.write(DENIAL)
    log.close()

    assert len(lines(tmp_path / "events.jsonl")) == 1


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    target = str(tmp_path / "absent" / "events.jsonl")

    with pytest.raises(EventLogError, match="create its directory first") as caught:
        open_event_log(target)

    assert isinstance(caught.value, EnforcerError)
    assert caught.value.target == target


def test_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EventLogError, match="that is a directory"):
        open_event_log(str(tmp_path))


def test_failed_reopen_keeps_writing_to_the_old_file(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    log = open_event_log(str(directory / "events.jsonl"))
    directory.rename(tmp_path / "moved")

    with pytest.raises(EventLogError):
        log.reopen()
    log.write(DENIAL)
    log.close()

    assert len(lines(tmp_path / "moved" / "events.jsonl")) == 1


def test_write_failure_is_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    if not os.access("/dev/full", os.W_OK):
        pytest.skip("/dev/full is not writable here")
    log = open_event_log("/dev/full")  # every write fails with ENOSPC

    log.write(DENIAL)
    log.write(DENIAL)

    assert log.lost == 2
    failures = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(failures) == 1  # once per run of failures, not once per event
    log.close()


def test_write_after_close_is_counted_not_raised(tmp_path: Path) -> None:
    log = open_event_log(str(tmp_path / "events.jsonl"))
    log.close()

    log.write(DENIAL)

    assert log.lost == 1


def test_empty_target_is_refused() -> None:
    with pytest.raises(EventLogError, match="give a file path"):
        open_event_log(" ")


def test_stderr_target(capsys: pytest.CaptureFixture[str]) -> None:
    log = open_event_log("stderr")
    assert isinstance(log, StderrEventLog)

    log.write(DENIAL)
    log.write({**DENIAL, "pid": 2})

    captured = capsys.readouterr()
    assert captured.out == ""
    first, second = (json.loads(line) for line in captured.err.splitlines())
    assert first == {**DENIAL, "time": "2023-11-14T22:13:20.250Z"}
    assert second["pid"] == 2


def test_journal_without_python_systemd_falls_back_to_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As on a host without python3-systemd: the import fails.
    monkeypatch.setitem(sys.modules, "systemd.journal", None)

    log = open_event_log("journal")
    log.write(DENIAL)

    assert isinstance(log, StderrEventLog)
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line) == {**DENIAL, "time": "2023-11-14T22:13:20.250Z"}


def test_journal_entry_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, object]] = []
    module = types.ModuleType("systemd.journal")
    module.send = lambda **fields: sent.append(fields)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "systemd.journal", module)

    log = open_event_log("journal")
    log.write({**DENIAL, "argv": ["id", "-u"], "container_name": None})
    log.write({**DENIAL, "action": "audit"})

    assert isinstance(log, JournalEventLog)
    killed, audited = sent
    assert json.loads(str(killed["MESSAGE"])) == {
        **DENIAL,
        "time": "2023-11-14T22:13:20.250Z",
        "argv": ["id", "-u"],
        "container_name": None,
    }
    assert killed["MESSAGE_ID"] == DENIAL_MESSAGE_ID
    assert killed["SYSLOG_IDENTIFIER"] == "enforcer"
    assert killed["PRIORITY"] == "4"  # warning
    assert audited["PRIORITY"] == "5"  # notice
    assert killed["ENFORCER_POLICY"] == "no-recon"
    assert killed["ENFORCER_CONTAINER_ID"] == "3f4e5d6c7b8a"
    assert killed["ENFORCER_PID"] == "31337"
    assert killed["ENFORCER_TIME"] == "2023-11-14T22:13:20.250Z"
    assert killed["ENFORCER_ARGV"] == '["id", "-u"]'
    assert "ENFORCER_CONTAINER_NAME" not in killed  # None is left out
