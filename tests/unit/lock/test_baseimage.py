"""Base choice and apt sources, without an engine: the rules for defaults and archives."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import knowledge
from builder.compat import CudaVersion
from builder.errors import LockError
from builder.lock import apt, baseimage
from builder.spec import model
from builder.spec.check import load_spec

KB = knowledge.load()


def spec_of(tmp_path: Path, python: str, extra: str = "") -> model.Spec:
    (tmp_path / "reprobuild.toml").write_text(
        f'name = "x"\npython = "{python}"\ntorch = "2.5.1"\n{extra}'
    )
    return load_spec(tmp_path, KB).spec


def test_default_base_is_python_slim_bookworm(tmp_path: Path) -> None:
    parsed = spec_of(tmp_path, "3.12")
    assert (
        baseimage.default_reference(parsed, CudaVersion(12, 4), KB) == "python:3.12-slim-bookworm"
    )


@pytest.mark.parametrize(
    ("python", "cuda", "expected"),
    [
        ("3.10", CudaVersion(12, 4), "nvidia/cuda:12.4.1-devel-ubuntu22.04"),
        ("3.12", CudaVersion(12, 6), "nvidia/cuda:12.6.3-devel-ubuntu24.04"),
        ("3.12", CudaVersion(12, 8), "nvidia/cuda:12.8.1-devel-ubuntu24.04"),
        ("3.12", CudaVersion(13, 0), "nvidia/cuda:13.0.2-devel-ubuntu24.04"),
    ],
)
def test_devel_base_matches_cuda_and_ubuntu_python(
    tmp_path: Path, python: str, cuda: CudaVersion, expected: str
) -> None:
    parsed = spec_of(tmp_path, python, 'cuda_toolkit = "devel"\n')
    assert baseimage.default_reference(parsed, cuda, KB) == expected


def test_devel_base_needs_an_ubuntu_python(tmp_path: Path) -> None:
    parsed = spec_of(tmp_path, "3.11", 'cuda_toolkit = "devel"\n')
    with pytest.raises(LockError) as caught:
        baseimage.default_reference(parsed, CudaVersion(12, 4), KB)
    assert str(caught.value) == (
        'cuda_toolkit = "devel" uses an nvidia/cuda image on Ubuntu, whose Python is the '
        "release's: 3.10 (Ubuntu 22.04), 3.12 (Ubuntu 24.04). Set python to one of those, or set "
        "base to a devel image with Python 3.11."
    )


def test_devel_base_unknown_for_that_cuda(tmp_path: Path) -> None:
    parsed = spec_of(tmp_path, "3.10", 'cuda_toolkit = "devel"\n')
    with pytest.raises(
        LockError, match=r"no nvidia/cuda devel image for CUDA 12.1 on Ubuntu 22.04"
    ):
        baseimage.default_reference(parsed, CudaVersion(12, 1), KB)


def test_ubuntu_suites_read_the_ubuntu_snapshot() -> None:
    archive = apt.AptArchive.at("2026-11-22T10:00:00Z", "jammy", None, None)
    mirror = "https://snapshot.ubuntu.com/ubuntu/20261122T100000Z"
    assert archive.sources("jammy").splitlines() == [
        f"deb [check-valid-until=no] {mirror} {pocket} main universe"
        for pocket in ("jammy", "jammy-updates", "jammy-security")
    ]


def test_debian_mirror_override_derives_security() -> None:
    archive = apt.AptArchive.at(
        "2026-11-22T10:00:00Z", "bookworm", "http://deb.debian.org/debian", None
    )
    assert archive.security_mirror == "http://deb.debian.org/debian-security"


def test_default_archive_is_the_snapshot() -> None:
    archive = apt.AptArchive.at("2026-11-22T10:00:00Z", "bookworm", None, None)
    assert archive.mirror == "http://snapshot.debian.org/archive/debian/20261122T100000Z"
    assert (
        archive.security_mirror
        == "http://snapshot.debian.org/archive/debian-security/20261122T100000Z"
    )
    assert archive.sources("bookworm").splitlines()[0] == (
        "deb [check-valid-until=no] "
        "http://snapshot.debian.org/archive/debian/20261122T100000Z bookworm main"
    )
