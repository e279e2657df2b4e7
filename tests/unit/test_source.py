"""The project's git state, read from a real repository made in the test: dirty exactly when a
file of the code layer (builder/codeset.py) differs from HEAD."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from builder import codeset, source
from builder.codeset import Rules
from tests.gitrepo import git, plain_git, put  # noqa: F401 (plain_git: a fixture)

pytestmark = pytest.mark.usefixtures("plain_git")


def test_reprobuilds_own_outputs_do_not_make_the_tree_dirty(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    project = tmp_path / "project"
    project.mkdir()
    put(project, "train.py", "REPRODUCE.md")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "start")
    put(project, "runs/20261123T000000000Z-0123456789ab/run.json", "reprobuild.build.json")
    put(project, "reprobuild.manifest.json", ".reprobuild/context/Dockerfile")
    put(project, "REPRODUCE.md", text="published again\n")  # tracked, and rewritten
    commit, dirty = source.git_state(project)
    assert commit is not None and len(commit) == 40 and dirty is False
    (tmp_path / "notes.txt").write_text("elsewhere in the checkout: not in the code layer\n")
    assert source.git_state(project) == (commit, False)
    (project / "notes.txt").write_text("in the project\n")
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


RULES = Rules(exclude=("data/", "*.ckpt"), include=("fixtures/tiny.bin",))


def relink(project: Path, target: str | None) -> None:
    """link.py pointed elsewhere, or made a file (`target` None)."""
    (project / "link.py").unlink()
    if target is None:
        put(project, "link.py")
    else:
        (project / "link.py").symlink_to(target)


@pytest.fixture
def committed(tmp_path: Path) -> Path:
    """A clean checkout: code, a tracked file the spec excludes, one .dockerignore drops, a
    tracked secret and a tracked symbolic link."""
    git(tmp_path, "init", "-q")
    put(tmp_path, ".gitignore", text="*.bin\nscratch/\n")
    put(tmp_path, ".dockerignore", text="notes/\n")
    put(tmp_path, "train.py", "model.py", "data/labels.csv", "notes/todo.md", ".env")
    (tmp_path / "link.py").symlink_to("train.py")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "first")
    assert source.git_state(tmp_path, rules=RULES)[1] is False
    return tmp_path


@pytest.mark.parametrize(
    ("change", "dirty"),
    [
        (lambda p: put(p, "train.py", text="changed\n"), True),
        (lambda p: put(p, "new.py"), True),
        (lambda p: (p / "model.py").unlink(), True),
        (lambda p: git(p, "mv", "model.py", "net.py"), True),
        (lambda p: put(p, "weights.bin", "scratch/x.py"), False),  # ignored by git
        (lambda p: put(p, "fixtures/tiny.bin"), True),  # ignored by git, let in by `include`
        (lambda p: put(p, "fixtures/other.bin"), False),
        (lambda p: put(p, "data/labels.csv", "data/more.csv", "last.ckpt"), False),  # `exclude`
        (lambda p: (p / "data" / "labels.csv").unlink(), False),
        (lambda p: put(p, "notes/todo.md", "notes/new.md"), False),  # .dockerignore
        (lambda p: put(p, ".env", ".env.local", "id_rsa"), False),  # secrets
        (lambda p: put(p, "__pycache__/model.cpython-311.pyc", "build/lib.py"), False),
        (lambda p: relink(p, "model.py"), False),
        (lambda p: relink(p, None), True),  # a file now
        (lambda p: put(p, '"quoted"\tname é.py'), True),
        (lambda p: put(p, '"quoted"\tname é.ckpt'), False),
        (lambda p: put(p, ".dockerignore", text="notes/\n*.md\n"), True),
    ],
)
def test_dirty_exactly_when_the_code_layer_differs(
    committed: Path, change: Callable[[Path], object], dirty: bool
) -> None:
    before = codeset.select(committed, RULES)
    change(committed)
    commit, found = source.git_state(committed, rules=RULES)
    assert commit is not None
    assert found is dirty
    assert (codeset.select(committed, RULES) != before) is dirty  # the layer agrees


def test_without_the_specs_rules_its_excluded_files_count(committed: Path) -> None:
    put(committed, "data/labels.csv", text="changed\n")
    assert source.git_state(committed)[1] is True
    assert source.git_state(committed, rules=RULES)[1] is False


def test_git_paths_in_quotes_are_read_back() -> None:
    assert source._unquote('"a \\"b\\"\\tc \\303\\251.py"') == 'a "b"\tc é.py'
    assert source._unquote("plain name.py") == "plain name.py"
