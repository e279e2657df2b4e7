"""`reprobuild lock` on real parts: uv against PyPI, the local registry, the engine running apt.

Debian package versions come from the live archive (deb.debian.org stands in for the snapshot
archive, which this machine cannot reach), so tests check structure and agreement, plus versions
that bookworm does not change (gcc 12.2.0, Python 3.11.2).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import knowledge
from builder.errors import LockError, ReprobuildError
from builder.lock import lockfile
from builder.lock.model import Lock
from builder.lock.stage import LockOptions, make_lock
from builder.resolve import resolve, target
from builder.spec.check import load_spec
from tests.infra import BASE, DEBIAN_MIRROR

KB = knowledge.load()
OPTIONS = LockOptions(debian_mirror=DEBIAN_MIRROR, snapshot="2026-11-22T00:00:00Z")


def make(tmp_path: Path, body: str, options: LockOptions = OPTIONS) -> Lock:
    (tmp_path / "reprobuild.toml").write_text(body)
    loaded = load_spec(tmp_path, KB)
    resolution = resolve.resolve(loaded.spec, target.from_spec(loaded.spec.target), KB)
    digest = lockfile.spec_hash(loaded.table, loaded.spec.requirements)
    messages: list[str] = []
    lock = make_lock(
        loaded,
        spec_digest=digest,
        resolutions=[resolution],
        knowledge=KB,
        options=options,
        progress=messages.append,
    )
    assert messages and messages[0].startswith("python: resolving the closure of")
    return lock


def body(python: str = "3.11", base: str = BASE, extra: str = "") -> str:
    return (
        f'name = "lab/x"\npython = "{python}"\ntorch = "2.5.1"\nbase = "{base}"\n{extra}'
        '[target]\ndriver = "535.104.05"\ngpus = ["A100"]\n'
    )


def test_torch_gpu_lock_pins_everything(tmp_path: Path, test_base: str) -> None:
    lock = make(
        tmp_path, body(extra='packages = ["numpy==2.1.3"]\nsystem_packages = ["libgomp1"]\n')
    )
    versions = {p.name: p.version for p in lock.python.packages}
    assert versions["torch"] == "2.5.1" and versions["numpy"] == "2.1.3"
    assert versions["nvidia-cudnn-cu12"] == "9.1.0.70" and versions["nvidia-nccl-cu12"] == "2.21.5"
    assert versions["nvidia-nvjitlink-cu12"] == "12.4.127"
    torch = lock.python.package("torch")
    assert torch is not None and torch.filename == "torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl"
    assert torch.sha256 == "de5b7d6740c4b636ef4db92be922f0edc425b65ed78c5076c43c42d362a45457"
    assert all(len(p.sha256) == 64 and p.url.startswith("https://") for p in lock.python.packages)
    assert lock.base.kind == "registry" and lock.base.python == "3.11.2"
    assert lock.base.suite == "bookworm" and lock.base.digest_source == "registry"
    assert lock.base.image == f"{BASE.rsplit(':', 1)[0]}@{lock.base.digest}"
    assert lock.system.requested == ("libgomp1",)
    assert [p for p in lock.system.packages if p.startswith("libgomp1=")] == [
        "libgomp1=12.2.0-14+deb12u1"
    ]
    assert lock.system.mirror == DEBIAN_MIRROR and lock.system.snapshot == "2026-11-22T00:00:00Z"
    assert lock.resolution["torch"]["label"] == "2.5.1+cu124"
    again = lockfile.loads(lockfile.dumps(lock))
    assert again == lock


def test_torch_2_4_captures_the_open_nvjitlink_pin(tmp_path: Path, test_base: str) -> None:
    lock = make(tmp_path, body().replace('"2.5.1"', '"2.4.1"'))
    nvjitlink = lock.python.package("nvidia-nvjitlink-cu12")
    assert nvjitlink is not None and nvjitlink.version.startswith("12.")
    assert lock.python.package("nvidia-cusparse-cu12") is not None


def test_python_mismatch_with_the_base(tmp_path: Path, test_base: str) -> None:
    with pytest.raises(LockError) as caught:
        make(tmp_path, body(python="3.12"))
    assert str(caught.value) == (
        f"the base {BASE} has Python 3.11.2, but the spec asks for Python 3.12: set "
        'python = "3.11", or choose a base with Python 3.12 (e.g. python:3.12-slim-bookworm).'
    )


def test_unknown_system_package(tmp_path: Path, test_base: str) -> None:
    with pytest.raises(LockError) as caught:
        make(tmp_path, body(extra='system_packages = ["no-such-package-xyz"]\n'))
    assert str(caught.value) == (
        f"system package(s) no-such-package-xyz not found in bookworm at {DEBIAN_MIRROR}: "
        "check the names (`apt-cache search` on a bookworm machine)."
    )


def test_unreachable_debian_archive(tmp_path: Path, test_base: str) -> None:
    options = LockOptions(debian_mirror="http://127.0.0.1:9/debian")
    with pytest.raises(LockError) as caught:
        make(tmp_path, body(extra='system_packages = ["curl"]\n'), options)
    assert str(caught.value).startswith(f"apt in {BASE.rsplit(':', 1)[0]}@sha256:")
    assert "could not read the archive http://127.0.0.1:9/debian" in str(caught.value)


def test_unreachable_registry_without_known_digest(tmp_path: Path) -> None:
    with pytest.raises(ReprobuildError) as caught:
        make(tmp_path, body(base="127.0.0.1:9/x/y:z"))
    assert str(caught.value).startswith("the registry 127.0.0.1:9 did not answer")


def test_unknown_python_package(tmp_path: Path, test_base: str) -> None:
    with pytest.raises(LockError) as caught:
        make(tmp_path, body(extra='packages = ["no-such-package-xyz-123"]\n'))
    assert str(caught.value).startswith(
        "the package 'no-such-package-xyz-123' is not on https://pypi.org/simple: check its name"
    )


def test_conflicting_python_pins(tmp_path: Path, test_base: str) -> None:
    with pytest.raises(LockError) as caught:
        make(tmp_path, body(extra='packages = ["numpy==2.1.3", "numpy==2.0.0"]\n'))
    message = str(caught.value)
    assert message.startswith("the Python requirements conflict; relax or align the pins uv names:")
    assert "numpy==2.1.3 and numpy==2.0.0" in message


def test_sdist_only_package_is_refused(tmp_path: Path, test_base: str) -> None:
    with pytest.raises(LockError) as caught:
        make(tmp_path, body(extra='packages = ["antlr4-python3-runtime==4.9.3"]\n'))
    assert "antlr4-python3-runtime" in str(caught.value)


def test_requirements_file_with_includes_extras_markers_and_wheelhouse(
    tmp_path: Path, test_base: str
) -> None:
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    _write_wheel(wheelhouse / "tinypkg-1.0-py3-none-any.whl")
    (tmp_path / "constraints.txt").write_text("idna==3.10\n")
    (tmp_path / "base.txt").write_text("requests[socks]==2.32.3\n")
    (tmp_path / "requirements.txt").write_text(
        "--find-links ./wheels\n-r base.txt\n-c constraints.txt\ntinypkg==1.0\n"
        "colorama==0.4.6 ; sys_platform == 'win32'\n"
    )
    lock = make(tmp_path, body(extra='requirements = "requirements.txt"\n'))
    versions = {p.name: p.version for p in lock.python.packages}
    assert versions["requests"] == "2.32.3" and versions["idna"] == "3.10"
    assert "pysocks" in versions  # the extra was honoured
    assert "colorama" not in versions  # the marker excludes it on linux
    tiny = lock.python.package("tinypkg")
    assert tiny is not None and tiny.url == "wheels/tinypkg-1.0-py3-none-any.whl"
    assert tiny.sha256 == _sha256(wheelhouse / "tinypkg-1.0-py3-none-any.whl")
    assert lock.python.find_links == ("./wheels",)
    assert lock.python.requirements == ("torch==2.5.1", "triton==3.1.0", "-r requirements.txt")


def _write_wheel(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("tinypkg/__init__.py", "")
        archive.writestr(
            "tinypkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n"
        )
        archive.writestr(
            "tinypkg-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr("tinypkg-1.0.dist-info/RECORD", "")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bootstrapped_base_records_suite_snapshot_mirror_and_packages(tmp_path: Path) -> None:
    base = (
        '{ bootstrap = "debian:bookworm", snapshot = "2026-11-01T00:00:00Z", '
        f'mirror = "{DEBIAN_MIRROR}" }}'
    )
    text = body(extra='system_packages = ["libgomp1"]\n').replace(
        f'base = "{BASE}"', f"base = {base}"
    )
    lock = make(tmp_path, text)
    assert (lock.base.kind, lock.base.suite, lock.base.snapshot, lock.base.mirror) == (
        "bootstrap",
        "bookworm",
        "2026-11-01T00:00:00Z",
        DEBIAN_MIRROR,
    )
    names = [entry.split("=")[0] for entry in lock.base.packages]
    assert {"base-files", "python3", "python3.11", "python3-venv", "ca-certificates"} <= set(names)
    assert lock.base.python == "3.11.2"
    assert [p for p in lock.system.packages if p.startswith("libgomp1=")] == [
        "libgomp1=12.2.0-14+deb12u1"
    ]
    assert not set(lock.system.packages) & set(lock.base.packages)


def test_offline_default_base_uses_the_knowledge_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Offline on purpose: registry traffic goes to a dead proxy and no engine answers, so the
    # default base is pinned from the knowledge base with its recorded Python and suite.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "pypi.org,files.pythonhosted.org")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    text = 'name = "lab/x"\npython = "3.11"\ntorch = "2.5.1"\n'
    lock = make(tmp_path, text)
    assert lock.base.reference == "python:3.11-slim-bookworm"
    assert (
        lock.base.digest
        == "sha256:b1add8a6f2aca6bcfcf0b9c9b522352f7ce0d62a3d556a2f2f32511aa0cca250"
    )
    assert lock.base.image == f"python@{lock.base.digest}"
    assert lock.base.python == "3.11.16" and lock.base.suite == "bookworm"
    assert lock.base.digest_source == (
        f"knowledge base {KB.version} (registry registry-1.docker.io unreachable)"
    )
    assert lock.notes[-1].startswith("the base digest came from the knowledge base:")


def test_variant_index_build_uses_its_index(tmp_path: Path, test_base: str) -> None:
    # The variant index is unreachable from here: the error must name it (and PyPI) as the hosts.
    text = body(extra='cuda = "12.1"\n')
    with pytest.raises(LockError) as caught:
        make(tmp_path, text)
    assert str(caught.value).startswith(
        "the package index (download.pytorch.org, pypi.org) did not answer; check the network"
    )


def test_python_less_base_gets_python_from_apt(tmp_path: Path, python_less_base: str) -> None:
    lock = make(tmp_path, body(base=python_less_base))
    assert lock.base.python_source == "apt" and lock.base.python == "3.11.2"
    names = {entry.split("=")[0] for entry in lock.system.packages}
    assert {"python3.11", "python3.11-venv"} <= names
    assert lock.system.requested == ("python3.11", "python3.11-venv")


def test_python_less_base_without_that_python_in_the_archive(
    tmp_path: Path, python_less_base: str
) -> None:
    with pytest.raises(LockError) as caught:
        make(tmp_path, body(python="3.12", base=python_less_base))
    assert str(caught.value) == (
        f"system package(s) python3.12, python3.12-venv not found in bookworm at {DEBIAN_MIRROR}: "
        "check the names (`apt-cache search` on a bookworm machine)."
    )


def test_lock_command_end_to_end(tmp_path: Path, test_base: str) -> None:
    import subprocess
    import sys

    (tmp_path / "reprobuild.toml").write_text(body(extra='system_packages = ["libgomp1"]\n'))
    command = [sys.executable, "-m", "builder", "-C", str(tmp_path), "lock"]
    mirror = ["--debian-mirror", DEBIAN_MIRROR]
    first = subprocess.run(command + mirror, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(
        f"wrote {tmp_path}/reprobuild.lock: torch 2.5.1+cu124, 22 wheels"
    )
    assert first.stdout.endswith(", 1 system package\n")
    progress = first.stderr.splitlines()
    assert progress[0] == "  python: resolving the closure of 2.5.1+cu124 for Python 3.11"
    assert progress[1] == "  python: 22 wheels pinned with sha256"
    assert any(line.startswith("  system: resolving libgomp1 with apt at ") for line in progress)
    written = (tmp_path / "reprobuild.lock").read_text()
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert (
        again.stdout
        == f"{tmp_path}/reprobuild.lock is up to date with the spec (use --upgrade to re-resolve)\n"
    )
    assert (tmp_path / "reprobuild.lock").read_text() == written
    check = subprocess.run([*command, "--check"], capture_output=True, text=True, check=False)
    assert check.returncode == 0
