"""The project's source state: the git commit it is at and whether the tree has changes.

What reprobuild itself writes into a project (the build context, the build record, the run
records) is not source: it never makes a tree dirty and is never copied into an image.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from builder import layout

# reprobuild's own outputs in a project: never source, never copied into an image.
OUTPUTS = (layout.WORK_FOLDER, layout.RECORD_FILE, layout.RUNS_FOLDER)
_HEAD = "# branch.oid "


def git_state(project: Path, also_ignored: tuple[Path, ...] = ()) -> tuple[str | None, bool | None]:
    """HEAD's commit and whether the tree has changes besides reprobuild's own outputs (and
    the folders `also_ignored`, where they lie in the project); (None, None) outside a git
    checkout or before its first commit."""
    # The whole checkout counts (`:/`), but not the outputs in this project (relative to it).
    pathspec = [
        ":/",
        *(f":(exclude){name}" for name in OUTPUTS),
        *(f":(exclude,literal){name}" for name in _inside(project, also_ignored)),
    ]
    # One git process: `reprobuild run` asks this while the engine starts a container, and on a
    # small machine every process then competes with the engine for the CPU.
    arguments = ["status", "--porcelain=v2", "--branch", "--no-ahead-behind"]
    try:
        status = _git(project, *arguments, "--untracked-files=normal", "--", *pathspec)
    except (OSError, subprocess.CalledProcessError):
        return None, None
    lines = status.splitlines()
    commit = next((line[len(_HEAD) :] for line in lines if line.startswith(_HEAD)), None)
    if commit is None or commit == "(initial)":
        return None, None
    return commit, any(not line.startswith("# ") for line in lines)


def _inside(project: Path, folders: tuple[Path, ...]) -> list[str]:
    """The folders that lie inside the project (not the project itself), relative to it."""
    root = project.resolve()
    inside = [folder.resolve() for folder in folders]
    return [str(folder.relative_to(root)) for folder in inside if root in folder.parents]


def _git(project: Path, *args: str) -> str:
    # Its own session: a Ctrl-C meant for a run's command does not cut its record's git state.
    return subprocess.run(
        ["git", "-C", str(project), *args],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    ).stdout
