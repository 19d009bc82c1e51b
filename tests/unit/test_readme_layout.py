"""The README's "Where things are" table names every folder of the package, and only real ones."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def listed_folders() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Where things are\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([\w./]+/)`", row.split("|")[1])]


def test_every_folder_the_readme_lists_exists() -> None:
    folders = listed_folders()
    assert folders, "no folders found under the README's 'Where things are'"
    assert [f for f in folders if not (ROOT / f).is_dir()] == []


def test_every_package_folder_is_listed_and_has_its_unit_tests_folder() -> None:
    package = sorted(
        f"enforcer/{d.name}/"
        for d in (ROOT / "enforcer").iterdir()
        if (d / "__init__.py").is_file()
    )
    assert sorted(f for f in listed_folders() if f.startswith("enforcer/")) == package
    assert [p for p in package if not (ROOT / "tests/unit" / p.split("/")[1]).is_dir()] == []
