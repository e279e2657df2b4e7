"""Locks built in memory, for tests that need no resolver, uv or network to make one."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from builder.resolve.resolve import ResolutionRecord
from builder.lock.model import BaseLock, Lock, LockedPackage, PythonClosure, SystemLock

DIGEST = "sha256:" + "d" * 64
PYPI = "https://files.pythonhosted.org/packages/xx"


def wheel(
    name: str, version: str, url: str | None = None, marker: str | None = None
) -> LockedPackage:
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    return LockedPackage(
        name, version, url or f"{PYPI}/{filename}", (name[:2] * 32)[:64], 1, marker
    )


GPU_PACKAGES = (
    wheel("numpy", "2.1.3"),
    wheel("nvidia-cudnn-cu12", "9.1.0.70", marker="platform_system == 'Linux'"),
    wheel("torch", "2.5.1"),
    wheel("triton", "3.1.0"),
)


def make_lock(
    *,
    cuda: str | None = "12.4",
    label: str = "2.5.1+cu124",
    packages: tuple[LockedPackage, ...] = GPU_PACKAGES,
    system: tuple[str, ...] = (),
    base: BaseLock | None = None,
    python: str = "3.11",
) -> Lock:
    return Lock(
        spec_hash="sha256:" + "1" * 64,
        knowledge_version="2026-11-22+000000000000",
        reprobuild_version="0.1.0",
        # Only the keys plan and publish read: the record as a lock file would carry it.
        resolution=cast(
            "ResolutionRecord",
            {
                "name": "lab/train",
                "torch": {"version": "2.5.1", "label": label},
                "cuda": cuda,
                "cudnn": "9.1.0.70" if cuda else None,
                "min_driver": "525.60.13" if cuda else None,
            },
        ),
        determinism={"seed": 0, "tf32": False, "cublas_workspace_config": ":4096:8"},
        base=base
        or BaseLock(
            kind="registry",
            reference="python:3.11-slim-bookworm",
            python="3.11.16",
            suite="bookworm",
            image=f"python@{DIGEST}",
            digest=DIGEST,
            digest_source="registry",
            python_source="image",
        ),
        system=SystemLock(
            "2026-11-22T00:00:00Z",
            "http://snapshot.debian.org/archive/debian/20261122T000000Z",
            "http://snapshot.debian.org/archive/debian-security/20261122T000000Z",
            system,
            system,
        ),
        python=PythonClosure(
            "x86_64-manylinux_2_28",
            python,
            ("https://pypi.org/simple",),
            (),
            ("torch==2.5.1",),
            packages,
            "0.13.9",
        ),
    )


WHEEL_TIME = (2020, 1, 1, 0, 0, 0)


def tiny_wheel(folder: Path, name: str, version: str) -> LockedPackage:
    """A real, installable pure-Python wheel in `folder`, locked at `wheels/NAME` (its path
    relative to the project whose `wheels/` folder `folder` is)."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": f"__version__ = {version!r}\n",
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{name}-{version}.dist-info/RECORD": "",
    }
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(zipfile.ZipInfo(member, WHEEL_TIME), text)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return LockedPackage(name, version, f"wheels/{path.name}", digest, path.stat().st_size)
