"""Snapshot checks: rendered text against its expected copy under tests/snapshots/.

Regenerate with REPROBUILD_UPDATE_SNAPSHOTS=1 after an intended change, and read the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SNAPSHOTS = Path(__file__).parent / "snapshots"


def check_snapshot(case: str, outputs: dict[str, str]) -> None:
    folder = SNAPSHOTS / case
    if os.environ.get("REPROBUILD_UPDATE_SNAPSHOTS") == "1":
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in outputs.items():
            (folder / name).write_text(text)
        # Never a pass: a rewritten snapshot says nothing until someone has read its diff.
        pytest.fail(
            f"snapshots of {case} rewritten: review the diff (`git diff tests/snapshots`), then "
            "run the tests again without REPROBUILD_UPDATE_SNAPSHOTS"
        )
    for name, text in outputs.items():
        assert text == (folder / name).read_text(), f"{case}/{name} differs from its snapshot"
