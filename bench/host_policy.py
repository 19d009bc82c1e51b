"""Policies that reach the host, so they only ever name programs the suite made."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

TEMPLATE = """\
apiVersion: enforcer/v1
kind: ExecPolicy
metadata:
  name: {name}
spec:
  selector:
    host: true
  rules:
    - name: blocked
      action: kill
      match:
        names: [{names}]
"""


def write(path: Path, name: str, programs: Sequence[Path]) -> None:
    """Writes the policy whole, then renames it into place: no reader sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(TEMPLATE.format(name=name, names=", ".join(p.name for p in programs)))
    os.replace(partial, path)
