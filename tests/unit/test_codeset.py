"""The code layer's files, chosen in real git checkouts (the `git` binary) and outside git."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder import codeset
from builder.codeset import CodeFile, CodeLayer, Rules
from builder.errors import RenderError
from tests.gitrepo import git, plain_git, put  # noqa: F401 (plain_git: a fixture)

pytestmark = pytest.mark.usefixtures("plain_git")


def chosen(project: Path, rules: Rules | None = None, skip: tuple[Path, ...] = ()) -> list[str]:
    return [item.path for item in codeset.select(project, rules or Rules(), skip)]


OUTPUTS = (
    "reprobuild.build.json",
    "reprobuild.manifest.json",
    "REPRODUCE.md",
    "runs/20261123T000000000Z-0123456789ab/run.json",
    ".reprobuild/context/Dockerfile",
)


def checkout(root: Path) -> None:
    """A checkout with every kind of file: tracked, untracked, ignored (by nested .gitignore
    files, .git/info/exclude and the global excludes), deleted, linked, and reprobuild's."""
    git(root, "init", "-q")
    put(root, ".gitignore", text="data/\n*.bin\n")
    put(root, "src/.gitignore", text="scratch.txt\n")
    put(root, ".dockerignore", text="# Docker reads these from the root\nnotes\n*.log\n")
    put(root, "train.py", "src/model.py", "old.py", "REPRODUCE.md")
    put(root, "tracked.bin", ".env", "tracked.log")
    git(root, "add", ".")
    git(root, "add", "-f", "tracked.bin", ".env")
    git(root, "commit", "-qm", "first")
    (root / "old.py").unlink()
    put(root, "src/new.py", "src/deep.log", "src/scratch.txt", "notes/todo.md")
    put(root, "data/train.csv", "weights.bin", "fixtures/tiny.bin", "root.log")
    put(root, "__pycache__/model.cpython-311.pyc", "build/lib.py", "id_rsa", "private.txt")
    put(root, "global.tmp", *OUTPUTS)
    (root / "link.py").symlink_to("train.py")
    (root / ".git" / "info" / "exclude").write_text("private.txt\n")
    settings = Path(os.environ["GIT_CONFIG_GLOBAL"])
    excludes = settings.with_name("excludes")
    excludes.write_text("*.tmp\n")
    settings.write_text(f"[core]\n\texcludesFile = {excludes}\n")


# What every checkout in these tests holds as code, by the rules alone.
CODE = [
    ".dockerignore",
    ".gitignore",
    "src/.gitignore",
    "src/deep.log",
    "src/model.py",
    "src/new.py",
    "tracked.bin",
    "train.py",
]


def test_the_code_is_what_git_would_commit(tmp_path: Path) -> None:
    project = tmp_path / "repo"
    project.mkdir()
    checkout(project)
    assert chosen(project) == CODE


def test_the_spec_excludes_and_lets_back_in(tmp_path: Path) -> None:
    project = tmp_path / "repo"
    project.mkdir()
    checkout(project)
    put(project, "data/sample.csv")
    rules = Rules(
        exclude=("src/", "!src/model.py"),
        include=("fixtures/", "data/sample.csv", "build/", "root.log", ".env", "REPRODUCE.md"),
    )
    assert chosen(project, rules) == [
        ".dockerignore",
        ".gitignore",
        "build/lib.py",
        "data/sample.csv",
        "fixtures/tiny.bin",
        "root.log",
        "src/model.py",
        "tracked.bin",
        "train.py",
    ]


def test_a_project_in_a_subfolder_holds_its_own_files(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    put(root, ".gitignore", text="*.ckpt\n")
    put(root, "README.md", "images/other/train.py", "images/example/reprobuild.toml")
    put(root, "images/example/.gitignore", text="/cache/\n")
    git(root, "add", ".")
    git(root, "commit", "-qm", "first")
    project = root / "images" / "example"
    put(project, "train.py", "model.ckpt", "cache/x", "REPRODUCE.md", "sub/cache/y")
    assert chosen(project) == [".gitignore", "reprobuild.toml", "sub/cache/y", "train.py"]


def test_outside_git_the_ignore_files_are_read_as_git_would(tmp_path: Path) -> None:
    project = tmp_path / "plain"
    project.mkdir()
    put(project, ".gitignore", text="data/\n*.bin\n!keep.bin\n")
    put(project, "src/.gitignore", text="scratch.txt\n*.bin\n")
    put(project, ".dockerignore", text="notes\n*.log\n!notes/keep.md\n")
    put(project, "train.py", "src/model.py", "src/scratch.txt", "src/keep.bin", "keep.bin")
    put(project, "weights.bin", "data/train.csv", "data/keep.bin", "src/deep.log", "root.log")
    put(project, "notes/todo.md", "notes/keep.md", ".env", "build/lib.py", ".venv/bin/python")
    put(project, ".git/config", "__pycache__/m.pyc", *OUTPUTS)
    (project / "link.py").symlink_to("train.py")
    expected = [
        ".dockerignore",
        ".gitignore",
        "keep.bin",
        "notes/keep.md",
        "src/.gitignore",
        "src/deep.log",
        "src/model.py",
        "train.py",
    ]
    assert chosen(project) == expected
    rules = Rules(exclude=("*.md",), include=("data/keep.bin", "build/", ".git/"))
    assert chosen(project, rules) == [
        ".dockerignore",
        ".gitignore",
        "build/lib.py",
        "data/keep.bin",
        "keep.bin",
        "src/.gitignore",
        "src/deep.log",
        "src/model.py",
        "train.py",
    ]


def test_tracked_outputs_of_reprobuild_stay_out(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    put(tmp_path, "train.py", *OUTPUTS)
    git(tmp_path, "add", "-f", ".")
    git(tmp_path, "commit", "-qm", "everything, outputs too")
    assert chosen(tmp_path) == ["train.py"]


def test_a_folder_to_skip_and_an_empty_project(tmp_path: Path) -> None:
    put(tmp_path, "train.py", "context/Dockerfile", ".context.abc/Dockerfile")
    skip = (tmp_path / "context", tmp_path / ".context.abc", tmp_path.parent)
    assert chosen(tmp_path, skip=skip) == ["train.py"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert codeset.select(empty, Rules()) == ()


def test_a_submodule_brings_its_files(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    git(inner, "init", "-q")
    put(inner, "lib.py", "README.md")
    git(inner, "add", ".")
    git(inner, "commit", "-qm", "inner")
    outer = tmp_path / "outer"
    outer.mkdir()
    git(outer, "init", "-q")
    put(outer, "train.py")
    git(outer, "-c", "protocol.file.allow=always", "submodule", "-q", "add", str(inner), "vendor")
    git(outer, "commit", "-qm", "outer")
    assert chosen(outer) == [".gitmodules", "train.py", "vendor/README.md", "vendor/lib.py"]


def test_a_dockerignore_line_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    put(tmp_path, ".dockerignore", text="data\n\n# a comment\nnotes\\\n")
    with pytest.raises(RenderError) as caught:
        codeset.select(tmp_path, Rules())
    assert str(caught.value) == (
        f"{tmp_path / '.dockerignore'}, line 4: 'notes\\\\' is not a pattern reprobuild can read "
        "(a trailing backslash?): fix or remove that line."
    )


def test_the_summary_counts_and_names_the_large_files(tmp_path: Path) -> None:
    put(tmp_path, "train.py", text="print('training')\n")
    for name, size in (("data/a.bin", 12_000_000), ("b.ckpt", 2_500_000_000), ("c.bin", 9_999_999)):
        put(tmp_path, name, text="")
        os.truncate(tmp_path / name, size)  # sparse: no disk used
    files = codeset.select(tmp_path, Rules())
    assert files == (
        CodeFile("b.ckpt", 2_500_000_000),
        CodeFile("c.bin", 9_999_999),
        CodeFile("data/a.bin", 12_000_000),
        CodeFile("train.py", 18),
    )
    rules = Rules(exclude=("x",))
    layer = codeset.summary(files, rules)
    assert layer == CodeLayer(
        rules,
        4,
        2_522_000_017,
        (CodeFile("b.ckpt", 2_500_000_000), CodeFile("data/a.bin", 12_000_000)),
    )
    assert codeset.describe(layer) == [
        "code: 4 files, 2.5 GB",
        "  b.ckpt: 2.5 GB",
        "  data/a.bin: 12.0 MB",
        "  files of 10.0 MB or more are usually data, not code: keep them out of the image by "
        "ignoring them in .gitignore or .dockerignore, or listing them in the spec's `exclude`; "
        "`reprobuild run` mounts the project folder at /workspace, so a run still reads them",
    ]
    assert codeset.describe(layer, shown=1)[1:3] == [
        "  b.ckpt: 2.5 GB",
        "  and 1 more of 10.0 MB or more",
    ]


def test_summaries_of_small_and_empty_layers() -> None:
    one = codeset.summary((CodeFile("train.py", 999),), Rules())
    assert codeset.describe(one) == ["code: 1 file, 999 B"]
    assert codeset.describe(codeset.summary((), Rules())) == ["code: 0 files, 0 B"]
    assert [codeset.size_text(n) for n in (0, 1_000, 1_400_000, 10**9)] == [
        "0 B",
        "1.0 kB",
        "1.4 MB",
        "1.0 GB",
    ]
