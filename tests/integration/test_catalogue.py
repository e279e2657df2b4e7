"""The catalogue's vision image (images/vision) built end to end: locked, built, smoke-tested and
run, on this machine's CPU.

Docker Hub is unreachable from CI, so the spec is copied with `base` set to the tests' Debian
base, locked there, and then given the committed lock's Python closure, wheel for wheel: what is
built is the catalogue's closure on another base (a fresh closure would follow every release of
an unpinned indirect dependency since the lock was made). Its torch build is the torch_image
fixture's (2.5.1, the PyPI CUDA 12.4 build), so the wheel cache and the CUDA and torch layers are
shared with it. CI has no GPU: the smoke test runs in CPU mode (tests/gpu/ runs the payload on
one).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from builder.build import buildrecord
from builder.lock import lockfile
from builder.lock.model import Lock
from tests.cli import reprobuild
from tests.infra import BASE, DEBIAN_MIRROR

VISION = Path(__file__).parents[2] / "images" / "vision"
BUILD_S = 1800  # the first build downloads the torch closure (3 GB) when the cache lacks it


def readable_by_all(folder: Path) -> None:
    """o+rX: runs execute as uid 1000, and pytest makes its folders for their owner alone."""
    for path in (folder, *folder.rglob("*")):
        path.chmod(path.stat().st_mode | 0o004 | (0o001 if path.is_dir() else 0))


def with_committed_closure(project: Path) -> None:
    """The lock made on the local base, its Python closure replaced by the committed one; the
    resolution it was made from must be the committed lock's (the same torch build and pairs)."""
    path = project / lockfile.LOCK_FILE
    committed, locked = lockfile.read(VISION / lockfile.LOCK_FILE), lockfile.read(path)
    assert chosen(locked) == chosen(committed)
    path.write_text(lockfile.dumps(replace(locked, python=committed.python)))


def chosen(lock: Lock) -> tuple[object, object]:
    return lock.resolution["torch"], lock.resolution.get("companions")


@pytest.fixture(scope="module")
def vision(tmp_path_factory: pytest.TempPathFactory, engine_client: Any) -> Iterator[Path]:
    project = tmp_path_factory.mktemp("catalogue") / "vision"
    shutil.copytree(VISION, project, ignore=shutil.ignore_patterns("reprobuild.lock"))
    spec = project / "reprobuild.toml"
    spec.write_text(spec.read_text().replace("\n[target]", f'base = "{BASE}"\n\n[target]'))
    readable_by_all(project)
    for verb in (["lock"], ["build", "--plain"]):
        result = reprobuild(
            "-C", str(project), *verb, "--debian-mirror", DEBIAN_MIRROR, timeout=BUILD_S
        )
        assert result.returncode == 0, result.stdout + result.stderr
        if verb == ["lock"]:
            with_committed_closure(project)
    record = buildrecord.read(project)
    try:
        yield project
    finally:
        # By ID: every tag goes with it (the torch layers alone are gigabytes).
        engine_client.remove_image(record.image_id)
        if record.dependencies:
            engine_client.remove_image(record.dependencies)


def test_the_image_holds_the_committed_closure_on_the_local_base(vision: Path) -> None:
    committed = lockfile.read(VISION / lockfile.LOCK_FILE)
    record = buildrecord.read(vision)
    assert record.lock == lockfile.file_digest(vision / lockfile.LOCK_FILE)
    names = [package.name for package in committed.python.packages]
    script = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    )
    result = reprobuild("-C", str(vision), "run", "--", "python", "-c", script, *names)
    assert result.returncode == 0, result.stdout + result.stderr
    installed = json.loads(result.stdout)
    assert installed == {package.name: package.version for package in committed.python.packages}
    assert lockfile.read(vision / lockfile.LOCK_FILE).base.reference == BASE
    assert committed.base.reference == "python:3.11-slim-bookworm"


def test_the_smoke_test_passes_in_the_vision_image(vision: Path) -> None:
    result = reprobuild("-C", str(vision), "smoke", "--cpu", "--json", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["verdict"], report["mode"]) == ("pass", "cpu")
    assert report["key"]["torch"] == "2.5.1+cu124"
    assert all(kernel["identical"] for kernel in report["kernels"].values())


def test_torchvision_and_timm_make_a_model_on_the_cpu(vision: Path) -> None:
    script = (
        "import timm, torch, torchvision; "
        "model = timm.create_model('resnet18', pretrained=False).eval(); "
        "out = model(torch.zeros(1, 3, 64, 64)); "
        "print(torchvision.__version__, timm.__version__, tuple(out.shape))"
    )
    before = set((vision / "runs").glob("*/run.json"))
    result = reprobuild("-C", str(vision), "run", "--", "python", "-c", script, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == "0.20.1+cu124 1.0.31 (1, 1000)\n"
    assert len(set((vision / "runs").glob("*/run.json")) - before) == 1
