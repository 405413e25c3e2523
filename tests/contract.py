"""The result-file contract as documented in docs/results.md, parsed, so the end-to-end tests check real run
folders against the documentation (not against a second hand-written list)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "results.md"


def documented_trial_columns(kind: str) -> set[str]:
    """Column names of the ``trials.parquet`` table in docs/results.md that apply to ``kind`` (sweep/ablation)."""
    section = DOC.read_text().split("## `trials.parquet`", 1)[1].split("\n## ", 1)[0]
    columns = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first, meaning = line.split("|")[1:3]
        meaning = meaning.strip()
        if meaning.startswith("sweeps:") and kind != "sweep" or meaning.startswith("ablations:") and kind != "ablation":
            continue
        columns |= set(re.findall(r"`([a-z_0-9]+)`", first))
    return columns


def documented_manifest_keys() -> set[str]:
    """Every name in backticks in the ``manifest.json`` section of docs/results.md (top-level keys and the names
    inside them)."""
    section = DOC.read_text().split("## `manifest.json`", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([a-z_0-9]+)`", section))
