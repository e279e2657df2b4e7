"""The project's git state, read from a real repository made in the test."""

from __future__ import annotations

import subprocess
from pathlib import Path

from builder import source


def git(folder: Path, *args: str) -> None:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", *identity, "-C", str(folder), *args], check=True, capture_output=True)


def test_reprobuilds_own_outputs_do_not_make_the_tree_dirty(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('training')\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "start")
    (project / "runs" / "20261123T000000000Z-0123456789ab").mkdir(parents=True)
    (project / "runs" / "20261123T000000000Z-0123456789ab" / "run.json").write_text("{}\n")
    (project / "reprobuild.build.json").write_text("{}\n")
    (project / ".reprobuild" / "context").mkdir(parents=True)
    commit, dirty = source.git_state(project)
    assert commit is not None and len(commit) == 40 and dirty is False
    (tmp_path / "notes.txt").write_text("elsewhere in the checkout\n")
    assert source.git_state(project) == (commit, True)


def test_outside_a_checkout_there_is_no_state(tmp_path: Path) -> None:
    assert source.git_state(tmp_path) == (None, None)


def test_before_the_first_commit_there_is_no_state(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("")
    assert source.git_state(tmp_path) == (None, None)


def test_folders_also_ignored_do_not_make_the_tree_dirty(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text("")
    git(tmp_path, "add", "train.py")
    git(tmp_path, "commit", "-qm", "first")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.pt").write_text("weights")
    commit, dirty = source.git_state(tmp_path, also_ignored=(tmp_path / "out",))
    assert commit is not None and dirty is False
    outside = tmp_path.parent / f"{tmp_path.name}-outputs"
    assert source.git_state(tmp_path, also_ignored=(outside,)) == (commit, True)
