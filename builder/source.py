"""The project's source state: the git commit it is at and whether the tree has changes.

What reprobuild itself writes into a project (the build context, the build record, the run
records) is not source: it never makes a tree dirty and is never copied into an image.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

WORK_FOLDER = ".reprobuild"  # the build context and the wheelhouse
RECORD_FILE = "reprobuild.build.json"
RUNS_FOLDER = "runs"
OUTPUTS = (WORK_FOLDER, RECORD_FILE, RUNS_FOLDER)


def git_state(project: Path) -> tuple[str | None, bool | None]:
    """HEAD's commit and whether the tree has changes besides reprobuild's own outputs;
    (None, None) outside a git checkout."""
    # The whole checkout counts (`:/`), but not the outputs in this project (relative to it).
    pathspec = [":/", *(f":(exclude){name}" for name in OUTPUTS)]
    try:
        commit = _git(project, "rev-parse", "HEAD")
        status = _git(project, "status", "--porcelain", "--untracked-files=normal", "--", *pathspec)
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit.strip(), bool(status.strip())


def _git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(project), *args], capture_output=True, text=True, check=True
    ).stdout
