"""Bases for another image platform: the architecture in the mmdebstrap call, the recipe and the
image config, and amd64 bases written exactly as before (their image IDs depend on it)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import replace
from pathlib import Path

from builder.build import base
from builder.lock import bootstrap
from tests.locks import make_lock

SOURCE = bootstrap.DebianSource("bookworm", "http://deb.debian.org/debian")
SOURCES_LINE = "deb [check-valid-until=no] http://deb.debian.org/debian bookworm main"
SNAPSHOT = "2026-11-01T00:00:00Z"


def test_debian_architectures() -> None:
    assert bootstrap.DEBIAN_ARCHITECTURES == {"linux/amd64": "amd64", "linux/arm64": "arm64"}


def test_arm64_argv_names_the_architecture() -> None:
    argv = bootstrap.mmdebstrap_argv(SOURCE, "out.tar", ("python3",), architecture="arm64")
    assert argv == [
        "mmdebstrap",
        "--quiet",
        "--mode=root",
        "--format=tar",
        "--architectures=arm64",
        "--variant=minbase",
        "--include=python3",
        "bookworm",
        "out.tar",
        SOURCES_LINE,
    ]


def test_arm64_simulation_names_the_architecture() -> None:
    argv = bootstrap.mmdebstrap_argv(
        SOURCE, "/dev/null", ("python3",), simulate=True, architecture="arm64"
    )
    assert argv[:4] == ["mmdebstrap", "--simulate", "--verbose", "--architectures=arm64"]


def test_amd64_argv_is_unchanged() -> None:
    expected = [
        "mmdebstrap",
        "--quiet",
        "--mode=root",
        "--format=tar",
        "--variant=minbase",
        "--include=python3",
        "bookworm",
        "out.tar",
        SOURCES_LINE,
    ]
    assert bootstrap.mmdebstrap_argv(SOURCE, "out.tar", ("python3",)) == expected
    assert (
        bootstrap.mmdebstrap_argv(SOURCE, "out.tar", ("python3",), architecture="amd64") == expected
    )


def test_recipes() -> None:
    head = "SOURCE_DATE_EPOCH=1793491200 mmdebstrap --quiet --mode=root --format=tar"
    tail = f"--variant=minbase --include=python3 bookworm rootfs.tar {SOURCES_LINE}"
    assert bootstrap.recipe(SOURCE, ("python3",), SNAPSHOT) == f"{head} {tail}"
    assert bootstrap.recipe(SOURCE, ("python3",), SNAPSHOT, architecture="amd64") == (
        f"{head} {tail}"
    )
    assert bootstrap.recipe(SOURCE, ("python3",), SNAPSHOT, architecture="arm64") == (
        f"{head} --architectures=arm64 {tail}"
    )


def _rootfs(folder: Path) -> Path:
    rootfs = folder / "rootfs.tar"
    with tarfile.open(rootfs, "w") as layer:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 0
        layer.addfile(info)
    return rootfs


def _config(archive: base.ImageArchive) -> tuple[bytes, str]:
    with tarfile.open(archive.path) as bundle:
        manifest = json.load(bundle.extractfile("manifest.json"))  # type: ignore[arg-type]
        member = bundle.extractfile(manifest[0]["Config"])
        assert member is not None
        return member.read(), manifest[0]["Config"]


def test_arm64_config(tmp_path: Path) -> None:
    rootfs = _rootfs(tmp_path)
    archive = base.write_image_archive(
        rootfs, tmp_path / "a.tar", "x:1", SNAPSHOT, "r", architecture="arm64"
    )
    config_bytes, _ = _config(archive)
    config = json.loads(config_bytes)
    assert (config["architecture"], config["variant"], config["os"]) == ("arm64", "v8", "linux")
    assert archive.image_id == f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"


def test_amd64_config_bytes_are_unchanged(tmp_path: Path) -> None:
    rootfs = _rootfs(tmp_path)
    default = base.write_image_archive(rootfs, tmp_path / "a.tar", "x:1", SNAPSHOT, "r")
    named = base.write_image_archive(
        rootfs, tmp_path / "b.tar", "x:1", SNAPSHOT, "r", architecture="amd64"
    )
    arm64 = base.write_image_archive(
        rootfs, tmp_path / "c.tar", "x:1", SNAPSHOT, "r", architecture="arm64"
    )
    config_bytes, _ = _config(default)
    expected = (
        '{"architecture":"amd64","config":{"Cmd":["/bin/bash"],"Env":["PATH=/usr/local/sbin:'
        '/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"]},'
        '"created":"2026-11-01T00:00:00Z","history":[{"created":"2026-11-01T00:00:00Z",'
        f'"created_by":"r"}}],"os":"linux","rootfs":{{"diff_ids":["{default.diff_id}"],'
        '"type":"layers"}}'
    )
    assert config_bytes.decode() == expected
    assert "variant" not in json.loads(config_bytes)
    assert default.image_id == named.image_id != arm64.image_id


def test_lock_architecture() -> None:
    amd64 = make_lock()  # its resolution names no platform, as every amd64 lock's
    arm64 = replace(amd64, resolution={**amd64.resolution, "platform": "linux/arm64"})
    assert (base.lock_architecture(arm64), base.lock_architecture(amd64)) == ("arm64", "amd64")
