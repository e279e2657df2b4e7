"""The project's source state: the git commit it is at and whether the tree has changes."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_state(project: Path) -> tuple[str | None, bool | None]:
    """HEAD's commit and whether the tree has changes; (None, None) outside a git checkout."""
    try:
        commit = _git(project, "rev-parse", "HEAD")
        status = _git(project, "status", "--porcelain", "--untracked-files=normal")
    except (OSError, subprocess.CalledProcessError):
        return None, None
    return commit.strip(), bool(status.strip())


def _git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(project), *args], capture_output=True, text=True, check=True
    ).stdout
