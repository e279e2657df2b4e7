"""The wheelhouse: real HTTP downloads (127.0.0.1, and PyPI when marked), every file verified."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from builder import tarstream
from builder.errors import FetchError, HashMismatch
from builder.lock.model import Lock, LockedPackage
from builder.render import wheelhouse
from tests.conftest import LocalIndex
from tests.unit.lock.test_lockfile import sample_lock

SIX = LockedPackage(
    "six",
    "1.17.0",
    "https://files.pythonhosted.org/packages/b7/ce/149a00dd41f10bc29e5921b496af8b574d8413afcd5e30dfa0ed46c2cc5e/six-1.17.0-py2.py3-none-any.whl",
    "4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274",
)


def served(local_index: LocalIndex, name: str, content: bytes) -> LockedPackage:
    folder = local_index.root / "files"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    return LockedPackage(
        name.split("-", maxsplit=1)[0], "1.0", f"{local_index.url}/files/{name}", digest
    )


def lock_of(*packages: LockedPackage) -> Lock:
    base = sample_lock()
    return replace(base, python=replace(base.python, packages=packages))


def no_progress(name: str, done: int, total: int) -> None:
    pass


def test_fetches_verifies_and_then_reuses(local_index: LocalIndex, tmp_path: Path) -> None:
    first = served(local_index, "alpha-1.0-py3-none-any.whl", b"alpha wheel bytes")
    second = served(local_index, "beta-1.0-py3-none-any.whl", b"beta" * 1000)
    lock = lock_of(first, second)
    seen: list[tuple[str, int, int]] = []
    report = wheelhouse.fetch(lock, tmp_path, tmp_path / "wh", lambda *a: seen.append(a))
    assert report.fetched == ["alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl"]
    assert report.bytes_fetched == len(b"alpha wheel bytes") + 4000
    assert (tmp_path / "wh" / "beta-1.0-py3-none-any.whl").read_bytes() == b"beta" * 1000
    assert seen[-1] == ("beta-1.0-py3-none-any.whl", 4000, 4000)
    again = wheelhouse.fetch(lock, tmp_path, tmp_path / "wh", no_progress)
    assert again.fetched == [] and again.cached == report.fetched


def test_a_changed_file_is_refused_and_not_kept(local_index: LocalIndex, tmp_path: Path) -> None:
    package = served(local_index, "alpha-1.0-py3-none-any.whl", b"original")
    (local_index.root / "files" / "alpha-1.0-py3-none-any.whl").write_bytes(b"swapped")
    with pytest.raises(HashMismatch) as caught:
        wheelhouse.fetch(lock_of(package), tmp_path, tmp_path / "wh", no_progress)
    found = hashlib.sha256(b"swapped").hexdigest()
    assert str(caught.value).startswith(
        f"alpha 1.0: {package.url} has sha256 {found}, but the lock pins {package.sha256}."
    )
    assert list((tmp_path / "wh").iterdir()) == []


def test_a_missing_file_names_the_url(local_index: LocalIndex, tmp_path: Path) -> None:
    package = LockedPackage(
        "gone", "1.0", f"{local_index.url}/files/gone-1.0-py3-none-any.whl", "0" * 64
    )
    with pytest.raises(FetchError) as caught:
        wheelhouse.fetch(lock_of(package), tmp_path, tmp_path / "wh", no_progress)
    assert str(caught.value) == (
        f"gone 1.0 could not be downloaded from {package.url} (HTTP 404). Check the network or "
        "proxy settings of this host."
    )


def test_local_wheels_are_copied_and_verified(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "tiny-1.0-py3-none-any.whl").write_bytes(b"tiny")
    package = LockedPackage(
        "tiny", "1.0", "wheels/tiny-1.0-py3-none-any.whl", hashlib.sha256(b"tiny").hexdigest()
    )
    report = wheelhouse.fetch(lock_of(package), tmp_path, tmp_path / "wh", no_progress)
    assert report.fetched == ["tiny-1.0-py3-none-any.whl"]


@pytest.mark.network
def test_fetch_from_pypi(tmp_path: Path) -> None:
    report = wheelhouse.fetch(lock_of(SIX), tmp_path, tmp_path / "wh", no_progress)
    assert report.fetched == ["six-1.17.0-py2.py3-none-any.whl"]
    assert tarstream.sha256_file(tmp_path / "wh" / "six-1.17.0-py2.py3-none-any.whl") == SIX.sha256


def test_a_verified_wheel_is_hashed_again_only_when_it_changed(
    local_index: LocalIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = served(local_index, "alpha-1.0-py3-none-any.whl", b"alpha wheel bytes")
    lock, cache = lock_of(package), tmp_path / "wh"
    wheelhouse.fetch(lock, tmp_path, cache, no_progress)
    hashed: list[str] = []
    real_hash = tarstream.sha256_file

    def counted(path: Path) -> str:
        hashed.append(path.name)
        return real_hash(path)

    monkeypatch.setattr(tarstream, "sha256_file", counted)
    again = wheelhouse.fetch(lock, tmp_path, cache, no_progress)
    assert again.cached == ["alpha-1.0-py3-none-any.whl"] and hashed == []
    # Same size, other bytes, a new mtime: the stamp no longer matches, the file is hashed,
    # found wrong, and downloaded again.
    wheel = cache / "alpha-1.0-py3-none-any.whl"
    before = wheel.stat().st_mtime_ns
    wheel.write_bytes(b"alpha wheel BYTES")
    os.utime(wheel, ns=(before + 1_000_000_000, before + 1_000_000_000))
    repaired = wheelhouse.fetch(lock, tmp_path, cache, no_progress)
    assert hashed == ["alpha-1.0-py3-none-any.whl"]
    assert repaired.fetched == ["alpha-1.0-py3-none-any.whl"]
    assert (cache / "alpha-1.0-py3-none-any.whl").read_bytes() == b"alpha wheel bytes"
