"""What the daemon keeps on disk between runs: the ids its pinned counters use.

Counters live in a map pinned in bpffs and are keyed by small ids (policy,
rule, target); the names behind those ids are kept here, tagged with the
kernel's id of the map they belong to. A different map (after a reboot, or
after someone removed the pin) means the saved names describe other counts:
they are dropped, and the counts start afresh with new ids.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from enforcer.enforce.ids import Ids, Target, TargetKind

log = logging.getLogger(__name__)

IDS_FILE = "ids.json"


def load_ids(state_dir: Path, counters_map_id: int) -> Ids | None:
    """The ids saved for this counters map, or None when there are none to trust."""
    try:
        saved = json.loads((state_dir / IDS_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("ignoring %s: %s", state_dir / IDS_FILE, e)
        return None
    if saved.get("counters_map_id") != counters_map_id:
        log.info("saved ids belong to another counters map: counting afresh")
        return None
    ids = Ids()
    ids.policies.restore((name, number) for name, number in saved["policies"])
    ids.rules.restore(((policy, rule), number) for policy, rule, number in saved["rules"])
    ids.targets.restore(
        (Target(TargetKind(kind), value), number) for kind, value, number in saved["targets"]
    )
    return ids


def save_ids(state_dir: Path, ids: Ids, counters_map_id: int) -> None:
    """Writes the ids atomically (a crash leaves the old file or the new one)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    document = {
        "counters_map_id": counters_map_id,
        "policies": ids.policies.items(),
        "rules": [[policy, rule, number] for (policy, rule), number in ids.rules.items()],
        "targets": [[t.kind.value, t.value, number] for t, number in ids.targets.items()],
    }
    temporary = state_dir / f".{IDS_FILE}.tmp"
    temporary.write_text(json.dumps(document))
    os.replace(temporary, state_dir / IDS_FILE)
