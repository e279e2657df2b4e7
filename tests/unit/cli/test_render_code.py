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
