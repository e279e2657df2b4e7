"""The lock file: stable TOML, exact round trip, refusal of hand edits and stale specs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from builder import knowledge
from builder.errors import LockError, LockFileError
from builder.lock import lockfile
from builder.lock.model import BaseLock, Lock, LockedPackage, PythonClosure, SystemLock
from builder.lock.python import closure_versions, cross_check, explain_uv_failure

if TYPE_CHECKING:
    from builder.resolve.resolve import ResolutionRecord

KB = knowledge.load()
BUILD = next(b for b in KB.builds if b.label == "2.5.1+cu124")


def package(name: str, version: str) -> LockedPackage:
    return LockedPackage(
        name, version, f"https://files.example/{name}-{version}.whl", "ab" * 32, 10
    )


def closure(*packages: LockedPackage) -> PythonClosure:
    return PythonClosure(
        "x86_64-manylinux_2_28",
        "3.11",
        ("https://pypi.org/simple",),
        (),
        ("torch==2.5.1",),
        packages,
        "0.13.9",
    )


GOOD = closure(  # sorted by name, as lock_python returns them
    package("nvidia-cuda-runtime-cu12", "12.4.127"),
    package("nvidia-cudnn-cu12", "9.1.0.70"),
    package("nvidia-nccl-cu12", "2.21.5"),
    package("torch", "2.5.1"),
)


def sample_lock(spec_hash: str = "sha256:" + "1" * 64) -> Lock:
    return Lock(
        spec_hash=spec_hash,
        knowledge_version=KB.version,
        reprobuild_version="0.1.0",
        resolution=cast(
            "ResolutionRecord",
            {"torch": {"label": "2.5.1+cu124"}, "cuda": "12.4", "archs": ["sm_80"]},
        ),
        determinism={"seed": 0, "tf32": False, "cublas_workspace_config": ":4096:8"},
        base=BaseLock(
            kind="registry",
            reference="python:3.11-slim-bookworm",
            python="3.11.16",
            suite="bookworm",
            image="python@sha256:" + "b" * 64,
            digest="sha256:" + "b" * 64,
            digest_source="registry",
        ),
        system=SystemLock(
            "2026-11-22T00:00:00Z",
            "http://snapshot.example/debian",
            None,
            ("curl",),
            ("curl=7.88.1-10+deb12u15", "libcurl4=7.88.1-10+deb12u15"),
        ),
        python=GOOD,
        notes=("a note",),
    )


def test_round_trip_is_exact_and_stable() -> None:
    text = lockfile.dumps(sample_lock())
    assert lockfile.loads(text) == sample_lock()
    assert lockfile.dumps(lockfile.loads(text)) == text
    assert text.startswith("# reprobuild.lock: every input of the image, pinned.")
    names = [line for line in text.splitlines() if line.startswith("name = ")]
    assert names == sorted(names)


def test_hand_edits_are_refused() -> None:
    text = lockfile.dumps(sample_lock())
    tampered = text.replace('sha256 = "abab', 'sha256 = "0bab', 1)
    assert tampered != text
    with pytest.raises(LockFileError) as caught:
        lockfile.loads(tampered, "reprobuild.lock")
    assert str(caught.value) == (
        "reprobuild.lock was edited by hand: its integrity digest does not match its content, so "
        "its pins (wheel hashes, image digests) cannot be trusted. Restore it from version "
        "control or re-create it with `reprobuild lock --upgrade`."
    )


def test_other_formats_and_garbage_are_refused() -> None:
    text = lockfile.dumps(sample_lock()).replace("format = 1", "format = 7")
    with pytest.raises(LockFileError, match="has format 7; this reprobuild reads format 1"):
        lockfile.loads(text)
    with pytest.raises(LockFileError, match="is not valid TOML"):
        lockfile.loads("[[[")


def test_stale_spec_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "reprobuild.lock"
    path.write_text(lockfile.dumps(sample_lock()))
    lock = lockfile.read(path)
    lockfile.check(lock, lock.spec_hash, path)
    with pytest.raises(LockFileError, match=r"the spec changed since .* run `reprobuild lock`"):
        lockfile.check(lock, "sha256:" + "2" * 64, path)


def test_missing_lock_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(LockFileError, match=r"no lock at .*: run `reprobuild lock` first"):
        lockfile.read(tmp_path / "reprobuild.lock")


def test_an_unreadable_lock_is_an_error_with_its_remedy(tmp_path: Path) -> None:
    path = tmp_path / "reprobuild.lock"
    path.write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(LockFileError) as raised:
        lockfile.read(path)
    assert str(raised.value) == (
        f"{path} cannot be read ('utf-8' codec can't decode byte 0xff in position 0: invalid "
        "start byte): restore it from version control, or make it again with "
        "`reprobuild lock --upgrade`."
    )


def test_spec_hash_covers_the_requirements_file(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==2.1.3\n")
    first = lockfile.spec_hash({"name": "x"}, requirements)
    assert first == lockfile.spec_hash({"name": "x"}, requirements)
    requirements.write_text("numpy==2.1.2\n")
    assert lockfile.spec_hash({"name": "x"}, requirements) != first
    assert lockfile.spec_hash({"name": "y"}, None) != lockfile.spec_hash({"name": "x"}, None)


def test_cross_check_accepts_the_resolved_build() -> None:
    cross_check(GOOD, BUILD)
    assert closure_versions(GOOD) == {
        "torch": "2.5.1",
        "cuda_runtime": "12.4.127",
        "cudnn": "9.1.0.70",
        "nccl": "2.21.5",
    }


def test_cross_check_refuses_a_cpu_wheel_of_the_same_version() -> None:
    wrong = closure(package("torch", "2.5.1+cpu"))
    with pytest.raises(LockError) as caught:
        cross_check(wrong, BUILD)
    assert str(caught.value).startswith(
        "the locked Python closure disagrees with the resolution of 2.5.1+cu124: torch 2.5.1+cpu "
        "(the resolution says 2.5.1); cuda_runtime missing (the resolution says 12.4.127);"
    )


def test_cuda_13_runtime_is_read_from_the_toolkit_meta_package() -> None:
    found = closure_versions(
        closure(package("cuda-toolkit", "13.0.2"), package("nvidia-cuda-runtime", "13.0.96"))
    )
    assert found["cuda_runtime"] == "13.0.2"


def test_uv_failures_name_package_or_host() -> None:
    missing = (
        "  cause: Because foo-bar was not found in the package registry and you require foo-bar"
    )
    assert explain_uv_failure(missing, ["https://pypi.org/simple"]).startswith(
        "the package 'foo-bar' is not on https://pypi.org/simple: check its name"
    )
    offline = "error: Failed to fetch: `https://pypi.org/simple/numpy/`"
    assert explain_uv_failure(offline, ["https://pypi.org/simple"]).startswith(
        "the package index (pypi.org) did not answer; check the network"
    )
