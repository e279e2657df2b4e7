"""`reprobuild render` says what went into the code layer, and names the files too big for it."""

from __future__ import annotations

import os
from pathlib import Path

from tests.cli import reprobuild

EXAMPLE = Path(__file__).parents[3] / "images" / "example"


def test_render_names_large_files_and_how_to_keep_them_out(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("reprobuild.toml", "reprobuild.lock"):
        (project / name).write_text((EXAMPLE / name).read_text())
    (project / ".dockerignore").write_text("/cache\n")
    for name, size in (("data/train.bin", 25_000_000), ("cache/big.bin", 30_000_000)):
        (project / name).parent.mkdir()
        (project / name).write_text("")
        os.truncate(project / name, size)  # sparse: no disk used
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    output = tmp_path / "context"
    result = reprobuild("-C", str(project), "render", "-o", str(output), env=env)
    assert result.returncode == 0, result.stderr
    size = sum(
        (project / name).stat().st_size
        for name in ("reprobuild.toml", "reprobuild.lock", ".dockerignore", "data/train.bin")
    )
    assert result.stdout.splitlines()[1:] == [
        f"code: 4 files, {size / 1e6:.1f} MB",
        "  data/train.bin: 25.0 MB",
        "  files of 10.0 MB or more are usually data, not code: keep them out of the image by "
        "ignoring them in .gitignore or .dockerignore, or listing them in the spec's `exclude`; "
        "`reprobuild run` mounts the project folder at /workspace, so a run still reads them",
    ]
    workspace = output / "code" / "workspace"
    assert sorted(str(p.relative_to(workspace)) for p in workspace.rglob("*")) == [
        ".dockerignore",
        "data",
        "data/train.bin",
        "reprobuild.lock",
        "reprobuild.toml",
    ]


def _example_project(folder: Path) -> Path:
    folder.mkdir()
    for name in ("reprobuild.toml", "reprobuild.lock", "train.py"):
        (folder / name).write_text((EXAMPLE / name).read_text())
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_render_into_the_project_or_its_parent_is_refused_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    project = _example_project(tmp_path / "project")
    before = _files(tmp_path)
    for output, shown in ((project, "."), (tmp_path, "..")):
        result = reprobuild("-C", str(project), "render", "-o", shown, cwd=project)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr == (
            f"error: {shown} is the project folder or holds it: the build context replaces its "
            "folder whole, which would delete the project. Give a folder of its own, e.g. "
            "-o .reprobuild/context (the default) or one outside the project.\n"
        )
        assert _files(tmp_path) == before, output


def test_render_into_a_folder_of_other_files_is_refused_and_deletes_nothing(
    tmp_path: Path,
) -> None:
    project = _example_project(tmp_path / "project")
    notes = tmp_path / "notes"
    notes.mkdir()
    for index in range(7):
        (notes / f"n{index}.txt").write_text("mine\n")
    (notes / "Dockerfile").write_text("FROM scratch\n")  # a rendered context's name, but not one
    result = reprobuild("-C", str(project), "render", "-o", str(notes))
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {notes} holds files that are not a build context reprobuild rendered "
        "(n0.txt, n1.txt, n2.txt, n3.txt, n4.txt and 2 more): the context replaces its folder "
        "whole, which would delete them. Give an empty or new folder, or remove that one first.\n"
    )
    assert sorted(p.name for p in notes.iterdir()) == ["Dockerfile"] + [
        f"n{index}.txt" for index in range(7)
    ]


def test_render_inside_the_project_again_and_again_leaves_its_output_out_of_the_code(
    tmp_path: Path,
) -> None:
    project = _example_project(tmp_path / "project")
    for _ in range(2):  # the second render replaces the first, which lies in the project
        result = reprobuild("-C", str(project), "render", "-o", "out/context", cwd=project)
        assert result.returncode == 0, result.stderr
    workspace = project / "out" / "context" / "code" / "workspace"
    assert sorted(p.name for p in workspace.iterdir()) == [
        "reprobuild.lock",
        "reprobuild.toml",
        "train.py",
    ]
    assert [p.name for p in (project / "out").iterdir()] == ["context"]  # no staging left
