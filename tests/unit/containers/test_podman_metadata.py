"""podman's metadata: `podman container inspect` parsed, asked once, and its failures."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from runtime_records import FIXTURES, PODMAN_ID, PODMAN_STOPPED_ID, fake_podman

from enforcer.containers import podman
from enforcer.containers.model import RuntimeMetadata


def test_podman_inspect_output_parses() -> None:
    found = podman.parse_inspect((FIXTURES / "podman" / "inspect.json").read_text())

    assert found[PODMAN_ID] == RuntimeMetadata(
        name="web",
        image="localhost/enforcer-busybox:test",
        labels={"team": "blue", "app.kubernetes.io/name": "web"},
        pid=15479,
    )
    # Labels printed as null, and an exited container's pid 0, mean none.
    assert found[PODMAN_STOPPED_ID] == RuntimeMetadata(
        name="old-job", image="localhost/enforcer-busybox:test"
    )


@pytest.mark.parametrize("text", ["", "{oops", "{}", '[{"Name": "no id"}]', "[42]"])
def test_malformed_podman_output_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        podman.parse_inspect(text)


def test_podman_is_asked_once_for_many_containers(tmp_path: Path) -> None:
    unknown = "f" * 64
    command, calls = fake_podman(
        tmp_path,
        stdout=(FIXTURES / "podman" / "inspect.json").read_text(),
        # What podman 4.3 does when one of the ids is not its container.
        exit_status=125,
        stderr=f"Error: inspecting object: no such container {unknown}\n",
    )

    found = podman.inspect([PODMAN_ID, PODMAN_STOPPED_ID, unknown, PODMAN_ID], command)

    assert set(found) == {PODMAN_ID, PODMAN_STOPPED_ID}
    assert calls.read_text().splitlines() == [
        f"container inspect {PODMAN_ID} {PODMAN_STOPPED_ID} {unknown}"
    ]


def test_no_ids_asks_podman_nothing(tmp_path: Path) -> None:
    command, calls = fake_podman(tmp_path)
    assert podman.inspect([], command) == {}
    assert not calls.exists()


@pytest.mark.parametrize(
    ("behaviour", "logged"),
    [
        # Every id unknown: podman prints "[]" (or nothing) and exits 125.
        ({"stdout": "", "exit_status": 125}, "does not know"),
        ({"stdout": "[]\n", "exit_status": 125}, "does not know"),
        ({"stdout": "Error: database is locked\n", "exit_status": 125}, "not its JSON"),
        ({"stdout": "[]", "sleep": 5}, "did not answer"),
    ],
)
def test_podman_failures_leave_metadata_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, behaviour: dict[str, Any], logged: str
) -> None:
    command, _ = fake_podman(tmp_path, **behaviour)
    caplog.set_level(logging.INFO, logger="enforcer.containers.podman")

    assert podman.inspect([PODMAN_ID], command, timeout=0.5) == {}
    assert logged in caplog.text


def test_missing_podman_leaves_metadata_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert podman.inspect([PODMAN_ID], (str(tmp_path / "no-podman"),)) == {}
    assert "not installed" in caplog.text
