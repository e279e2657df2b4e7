"""Bootstrapped bases: the mmdebstrap call, apt's simulation, and an image ID that depends only
on the root filesystem bytes and the snapshot time."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from builder import snapshots
from builder.build import base
from builder.lock import bootstrap

SOURCE = bootstrap.DebianSource("bookworm", "http://deb.debian.org/debian")


def test_snapshot_mirror_and_epoch() -> None:
    assert snapshots.snapshot_mirror("2026-11-01T00:00:00Z") == (
        "http://snapshot.debian.org/archive/debian/20261101T000000Z"
    )
    assert snapshots.epoch_seconds("2026-11-01T00:00:00Z") == 1793491200


def test_mmdebstrap_argv() -> None:
    assert bootstrap.mmdebstrap_argv(SOURCE, "out.tar", ("python3", "ca-certificates")) == [
        "mmdebstrap",
        "--quiet",
        "--mode=root",
        "--format=tar",
        "--variant=minbase",
        "--include=python3,ca-certificates",
        "bookworm",
        "out.tar",
        "deb [check-valid-until=no] http://deb.debian.org/debian bookworm main",
    ]


def test_recipe_has_no_paths() -> None:
    text = bootstrap.recipe(SOURCE, ("python3",), "2026-11-01T00:00:00Z")
    assert text.startswith("SOURCE_DATE_EPOCH=1793491200 mmdebstrap --quiet")
    assert " rootfs.tar " in text and "/tmp" not in text


def test_simulation_parsing() -> None:
    text = (
        "Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []\n"
        "Conf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])\n"
        "Inst base-files (12.4+deb12u15 Debian:12.15/oldstable [amd64])\n"
    )
    assert bootstrap.parse_simulation(text) == [
        ("base-files", "12.4+deb12u15"),
        ("libc6", "2.36-9+deb12u14"),
    ]


def test_image_id_depends_only_on_rootfs_and_time(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs.tar"
    with tarfile.open(rootfs, "w") as layer:
        info = tarfile.TarInfo("etc/hostname")
        info.size = 0
        layer.addfile(info)
    first = base.write_image_archive(rootfs, tmp_path / "a.tar", "x:1", "2026-11-01T00:00:00Z", "r")
    second = base.write_image_archive(
        rootfs, tmp_path / "b.tar", "y:2", "2026-11-01T00:00:00Z", "r"
    )
    later = base.write_image_archive(rootfs, tmp_path / "c.tar", "x:1", "2026-11-02T00:00:00Z", "r")
    assert first.image_id == second.image_id != later.image_id
    with tarfile.open(first.path) as bundle:
        manifest = json.load(bundle.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(bundle.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["x:1"]
    assert config["rootfs"]["diff_ids"] == [first.diff_id]
    assert config["created"] == "2026-11-01T00:00:00Z"
