"""`reprobuild diff` against the real engine, on tiny images loaded from archives made here."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder.check import diff
from builder.cli.main import cli
from builder.cli.present import diff_text
from builder.engine.common import address

CREATED_A = "2024-01-01T00:00:00Z"
CREATED_B = "2024-02-01T00:00:00Z"
OLD, NEW = 1_700_000_000, 1_700_000_600
# (path, contents or None for a directory, mtime)
BASE = [("base", None, OLD), ("base/hello.txt", b"hello\n", OLD)]
APP_A = [
    ("app", None, OLD),
    ("app/data.txt", b"one\n", OLD),
    ("app/stamp.txt", b"stamp\n", OLD),
]
APP_B = [
    ("app", None, OLD),
    ("app/data.txt", b"two\n", OLD),  # same size as A's: only the content differs
    ("app/extra.txt", b"extra\n", OLD),
    ("app/stamp.txt", b"stamp\n", NEW),
]


@dataclass(frozen=True)
class Images:
    a: str
    a_alias: str  # a second name for A
    b: str  # layer 1 and config (Env, created) differ from A
    c: str  # A's layers, another Env
    d: str  # A's first layer only


def _layer(path: Path, entries: list[tuple[str, bytes | None, int]]) -> str:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as layer:
        for name, data, mtime in entries:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            else:
                info.size, info.mode = len(data), 0o644
            layer.addfile(info, io.BytesIO(data) if data is not None else None)
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def _config(diff_ids: list[str], mode: str, created: str, session: str) -> bytes:
    document = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        # The label makes every run's image IDs its own: runs beside this one cannot collide.
        "config": {"Env": ["PATH=/usr/bin", f"MODE={mode}"], "Labels": {"test.run": session}},
        "history": [
            {"created": CREATED_A, "created_by": f"layer {i}"} for i in range(len(diff_ids))
        ],
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    return json.dumps(document, sort_keys=True).encode()


def _archive(folder: Path, images: dict[str, tuple[bytes, list[str]]]) -> Path:
    """A `docker load` archive: every layer file in `folder`, one manifest entry per image."""
    archive = folder / "images.tar"
    manifest = []
    with tarfile.open(archive, "w") as output:
        for layer in sorted(folder.glob("*.layer.tar")):
            output.add(layer, layer.name)
        for reference, (config, layers) in images.items():
            name = f"{hashlib.sha256(config).hexdigest()}.json"
            info = tarfile.TarInfo(name)
            info.size = len(config)
            output.addfile(info, io.BytesIO(config))
            manifest.append({"Config": name, "RepoTags": [reference], "Layers": layers})
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        output.addfile(info, io.BytesIO(data))
    return archive


@pytest.fixture(scope="module")
def images(engine_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    folder = tmp_path_factory.mktemp("diff-images")
    session = uuid.uuid4().hex[:12]
    names = Images(*(f"reprobuild-test/diff:{n}-{session}" for n in ("a", "a2", "b", "c", "d")))
    base = _layer(folder / "0.layer.tar", BASE)
    app_a = _layer(folder / "1a.layer.tar", APP_A)
    app_b = _layer(folder / "1b.layer.tar", APP_B)
    a_layers = ["0.layer.tar", "1a.layer.tar"]
    config_a = _config([base, app_a], "a", CREATED_A, session)
    archive = _archive(
        folder,
        {
            names.a: (config_a, a_layers),
            names.a_alias: (config_a, a_layers),
            names.b: (
                _config([base, app_b], "b", CREATED_B, session),
                ["0.layer.tar", "1b.layer.tar"],
            ),
            names.c: (_config([base, app_a], "c", CREATED_A, session), a_layers),
            names.d: (_config([base], "a", CREATED_A, session), ["0.layer.tar"]),
        },
    )
    try:
        with archive.open("rb") as handle:
            engine_client.load_stream(iter(lambda: handle.read(1 << 16), b""))
        yield names
    finally:
        for reference in (names.a, names.a_alias, names.b, names.c, names.d):
            engine_client.client.api.remove_image(reference, force=True)


def _paths(report: diff.ImageDiff) -> list[str]:
    return [difference.path for difference in report.config]


def test_report_names_each_config_field_layer_and_file(engine_client: Any, images: Images) -> None:
    report = diff.diff_images(engine_client, images.a, images.b)

    assert not report.identical
    assert _paths(report) == ["config.Env[1]", "created", "rootfs.diff_ids[1]"]
    assert (report.config[0].a, report.config[0].b) == ('"MODE=a"', '"MODE=b"')
    assert (report.config[1].a, report.config[1].b) == (f'"{CREATED_A}"', f'"{CREATED_B}"')
    assert [layer.equal for layer in report.layers] == [True, False]
    assert report.first_differing_layer == 1
    assert [(f.path, f.kind, f.attributes) for f in report.files] == [
        ("app/data.txt", "changed", ("content",)),
        ("app/extra.txt", "only in B", ()),
        ("app/stamp.txt", "changed", ("mtime",)),
    ]
    stamp = report.files[2]
    assert stamp.a is not None and stamp.b is not None
    assert (stamp.a.mtime, stamp.b.mtime) == (OLD, NEW)


def test_cli_prints_the_differences_and_exits_1(images: Images) -> None:
    result = CliRunner().invoke(cli, ["diff", images.a, images.b])

    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert "config: 3 fields differ" in lines
    assert "  config.Env[1]" in lines
    assert "layers: A has 2, B has 2; 1 of 2 differ" in lines
    assert "files in layer 1, the first that differs: 3 paths differ" in lines
    assert "  only in B  app/extra.txt" in lines
    assert (
        "  changed    app/stamp.txt  mtime: 2023-11-14T22:13:20Z -> 2023-11-14T22:23:20Z" in lines
    )
    assert any(line.startswith("  changed    app/data.txt  content: sha256:") for line in lines)


def test_two_names_of_one_image_are_identical_and_exit_0(images: Images) -> None:
    result = CliRunner().invoke(cli, ["diff", images.a, images.a_alias])

    assert result.exit_code == 0, result.output
    assert result.output.endswith("identical: both names are the same image\n")


def test_config_only_difference_lists_no_files(engine_client: Any, images: Images) -> None:
    report = diff.diff_images(engine_client, images.a, images.c)

    assert _paths(report) == ["config.Env[1]"]
    assert all(layer.equal for layer in report.layers)
    assert report.first_differing_layer is None
    assert report.files == []
    assert "files: every layer is the same; only the config differs" in diff_text(report)


def test_missing_layer_lists_its_files_as_only_in_a(engine_client: Any, images: Images) -> None:
    report = diff.diff_images(engine_client, images.a, images.d)

    assert _paths(report) == ["history[1]", "rootfs.diff_ids[1]"]
    assert report.config[0].b is None
    assert [(layer.equal, layer.b) for layer in report.layers][1] == (False, None)
    assert report.first_differing_layer == 1
    assert [(f.path, f.kind) for f in report.files] == [
        ("app", "only in A"),
        ("app/data.txt", "only in A"),
        ("app/stamp.txt", "only in A"),
    ]
    assert "layers: A has 2, B has 1; 1 of 2 differ" in diff_text(report)


def test_missing_image_exits_2_naming_it_and_the_fix(images: Images) -> None:
    missing = f"reprobuild-test/diff:missing-{uuid.uuid4().hex[:12]}"
    # A real process: the exit code comes from the CLI's ReprobuildError handling in main().
    result = subprocess.run(
        [sys.executable, "-m", "builder", "diff", images.a, missing],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": address()},
        timeout=120,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: the engine has no image {missing}.")
    assert "reprobuild build" in result.stderr and f"docker pull {missing}" in result.stderr
