"""linux/arm64 images on this x86_64 machine, on real parts: qemu-user through binfmt_misc (which
scripts/infra installs and enables), the tests' engine and registry, and the arm64 Debian base
that scripts/infra bootstraps with mmdebstrap.

- a lock of two platforms (stand-in wheels, so each build takes seconds) builds an image for each,
  labelled with its platform, and a clean rebuild gives the same image IDs; `--push` pushes both
  and an OCI image index whose digest a second push of a clean rebuild gives again;
- a real spec for linux/arm64 alone (the CPU-only aarch64 torch 2.10.0 from PyPI) is locked for
  aarch64, built, and its smoke test passes in CPU mode under emulation. No GPU can be reached
  through emulation: the GPU smoke test needs a GH200 or GB200 node (tests/gpu on such a machine).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from builder.build import buildrecord
from builder.build.buildrecord import BuildRecord, PlatformImage
from builder.engine.registry import OCI_INDEX, RegistryClient
from builder.knowledge import AMD64, ARM64
from builder.lock import lockfile
from builder.lock.model import BaseLock, PlatformLock
from builder.reference import ImageReference
from tests.cli import reprobuild
from tests.infra import ARM64_BASE, DEBIAN_MIRROR, REGISTRY
from tests.integration.test_build import small_project, write_lock
from tests.locks import make_lock, tiny_wheel

EMULATED_S = 1800  # the emulated smoke test imports torch in several processes (10 s each)
ARM64_SPEC = f"""name = "lab/arm"
python = "3.11"
torch = "2.10.0"
cpu_only = true
platforms = ["linux/arm64"]
base = "{ARM64_BASE}"
"""


def arm64_base_lock() -> BaseLock:
    with RegistryClient() as client:
        resolved = client.resolve(ImageReference.parse(ARM64_BASE), ARM64)
    image = f"{ARM64_BASE.rsplit(':', 1)[0]}@{resolved.digest}"
    return BaseLock(
        "registry", ARM64_BASE, "3.11.2", "bookworm", image=image, digest=resolved.digest
    )


def two_platform_project(folder: Path) -> Path:
    """The small project of test_build, its lock given a linux/arm64 image of its own wheels on
    the arm64 base; the spec says both platforms."""
    small_project(folder)
    spec = folder / "reprobuild.toml"
    spec.write_text(spec.read_text() + 'platforms = ["linux/amd64", "linux/arm64"]\n')
    lock = lockfile.read(folder / lockfile.LOCK_FILE)
    arm = PlatformLock(
        resolution={**lock.resolution, "platform": ARM64},
        base=arm64_base_lock(),
        system=lock.system,
        python=replace(
            lock.python,
            platform="aarch64-manylinux_2_28",
            packages=(*lock.python.packages, tiny_wheel(folder / "wheels", "armonly", "1.0")),
        ),
    )
    write_lock(folder, replace(lock, other_platforms=(arm,)))
    return folder


def build(project: Path, *args: str) -> BuildRecord:
    result = reprobuild("-C", str(project), "build", "--plain", *args, timeout=EMULATED_S)
    assert result.returncode == 0, result.stdout + result.stderr
    return buildrecord.read(project)


def remove(engine: Any, record: BuildRecord) -> None:
    """Every platform's image and the dependencies image each was built on, by ID."""
    images: list[BuildRecord | PlatformImage] = [record, *record.other_platforms]
    for image in images:
        engine.remove_image(image.image_id)
        if image.dependencies:
            engine.remove_image(image.dependencies)


@pytest.fixture
def both(tmp_path: Path, engine_client: Any, test_base: str) -> Iterator[Path]:
    project = two_platform_project(tmp_path / "both")
    yield project
    if (project / "reprobuild.build.json").exists():
        remove(engine_client, buildrecord.read(project))


def test_a_lock_of_two_platforms_builds_and_pushes_both_reproducibly(
    both: Path, engine_client: Any
) -> None:
    lock = lockfile.read(both / lockfile.LOCK_FILE)
    assert lock.platforms == (AMD64, ARM64)
    first = build(both)
    assert first.platform == AMD64 and [o.platform for o in first.other_platforms] == [ARM64]
    arm = first.other_platforms[0]
    tag = lockfile.file_digest(both / lockfile.LOCK_FILE).removeprefix("sha256:")[:12]
    assert (first.image, arm.image) == (f"lab/train:{tag}", f"lab/train:{tag}-arm64")
    inspected = engine_client.inspect_image(arm.image_id)
    assert (inspected["Os"], inspected["Architecture"], inspected.get("Variant")) == (
        "linux",
        "arm64",
        "v8",
    )
    assert engine_client.inspect_image(first.image_id)["Architecture"] == "amd64"
    script = "import armonly, platform; print(platform.machine(), armonly.__version__)"
    machine = engine_client.run(arm.image_id, ["python", "-c", script], network=False)
    assert (machine.exit_code, machine.stdout) == (0, "aarch64 1.0\n")

    pushed = f"{REGISTRY}/reprobuild-test/two-platforms:v1"
    again = build(both, "--no-cache", "--push", pushed)
    assert (again.image_id, again.other_platforms[0].image_id) == (first.image_id, arm.image_id)
    assert again.pushed_index is not None and again.pushed is not None
    index_digest = again.pushed_index.split("@")[1]
    with RegistryClient() as client:
        reference = ImageReference.parse(pushed)
        body, media_type = client.manifest(reference, "v1")
        document = json.loads(body)
        tags = client.tags(reference)
        amd, armed = client.resolve(reference), client.resolve(reference, ARM64)
    assert media_type == OCI_INDEX
    assert {"v1", "v1-amd64", "v1-arm64"} <= set(tags)  # each image at its own tag first
    assert again.pushed_tag == pushed  # the tag of the index, which users pull
    assert [entry["platform"] for entry in document["manifests"]] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
    ]
    assert (amd.index_digest, armed.index_digest) == (index_digest, index_digest)
    assert amd.digest == again.manifest_digest
    assert armed.digest == again.other_platforms[0].manifest_digest
    assert (amd.config_digest, armed.config_digest) == (first.image_id, arm.image_id)

    remove(engine_client, again)
    third = build(both, "--no-cache", "--push", pushed)
    assert third.pushed_index == again.pushed_index  # the index digest reproduces


def test_a_platform_the_lock_does_not_pin_is_refused(tmp_path: Path, test_base: str) -> None:
    project = small_project(tmp_path / "amd64")
    result = reprobuild("-C", str(project), "build", "--platform", "linux/arm64")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "error: reprobuild.lock pins linux/amd64, not linux/arm64: add 'linux/arm64' to "
        "platforms in the spec (and run `reprobuild lock`), or choose a platform the lock pins.\n"
    )


@pytest.fixture(scope="module")
def arm_torch(tmp_path_factory: pytest.TempPathFactory, engine_client: Any) -> Iterator[Path]:
    project = tmp_path_factory.mktemp("arm-torch")
    project.chmod(0o755)  # the runs' user reads it (pytest makes its folders for root alone)
    (project / "reprobuild.toml").write_text(ARM64_SPEC)
    for verb in (["lock", "--debian-mirror", DEBIAN_MIRROR], ["build", "--plain"]):
        result = reprobuild("-C", str(project), *verb, timeout=EMULATED_S)
        assert result.returncode == 0, result.stdout + result.stderr
    record = buildrecord.read(project)
    try:
        yield project
    finally:
        engine_client.remove_image(record.image_id)
        if record.dependencies:
            engine_client.remove_image(record.dependencies)


def test_the_arm64_lock_pins_aarch64_wheels_and_the_arm64_base(arm_torch: Path) -> None:
    lock = lockfile.read(arm_torch / lockfile.LOCK_FILE)
    assert lock.platforms == (ARM64,) and lock.other_platforms == ()
    assert lock.python.platform == "aarch64-manylinux_2_28"
    torch = lock.python.package("torch")
    assert torch is not None
    assert torch.filename == "torch-2.10.0-cp311-cp311-manylinux_2_28_aarch64.whl"
    assert lock.resolution["torch"]["label"] == "2.10.0+cpu"
    assert lock.base.digest == arm64_base_lock().digest
    record = buildrecord.read(arm_torch)
    assert record.platform == ARM64 and record.image.endswith("-arm64")


def test_the_smoke_test_passes_under_emulation(arm_torch: Path) -> None:
    result = reprobuild("-C", str(arm_torch), "smoke", "--cpu", "--json", timeout=EMULATED_S)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["verdict"], report["mode"]) == ("pass", "cpu")
    assert report["key"]["torch"] == "2.10.0+cpu"
    assert report["key"]["machine"] == "aarch64"
    assert all(kernel["identical"] for kernel in report["kernels"].values())


def test_system_packages_are_resolved_for_arm64(tmp_path: Path, engine_client: Any) -> None:
    # apt runs in the arm64 base under emulation: libc6-i386 exists for amd64 alone.
    for name, listed in (("arm", '"libgomp1"'), ("i386", '"libc6-i386"')):
        project = tmp_path / name
        project.mkdir()
        (project / "reprobuild.toml").write_text(ARM64_SPEC + f"system_packages = [{listed}]\n")
        result = reprobuild("-C", str(project), "lock", "--debian-mirror", DEBIAN_MIRROR)
        if name == "arm":
            assert result.returncode == 0, result.stdout + result.stderr
            lock = lockfile.read(project / lockfile.LOCK_FILE)
            assert lock.system.requested == ("libgomp1",)
            assert any(p.startswith("libgomp1=12.2.0-14") for p in lock.system.packages)
        else:
            assert result.returncode == 1 and not (project / lockfile.LOCK_FILE).exists()
            assert (
                "system package(s) libc6-i386 not found in bookworm for linux/arm64 at "
                "http://deb.debian.org/debian" in " ".join(result.stderr.split())
            ), result.stderr


def test_a_lock_of_other_platforms_than_the_spec_is_made_again(
    tmp_path: Path, engine_client: Any
) -> None:
    # A lock current by the spec's hash but made for linux/amd64 (as a lock made before the
    # knowledge base knew a Grace GPU would be): `lock` locks linux/arm64 instead of saying it is
    # up to date.
    project = tmp_path / "relock"
    project.mkdir()
    (project / "reprobuild.toml").write_text(ARM64_SPEC)
    write_lock(project, make_lock(cuda=None, label="2.10.0"))
    result = reprobuild("-C", str(project), "lock", "--debian-mirror", DEBIAN_MIRROR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "was made for linux/amd64, and the spec builds for linux/arm64: locking again" in (
        result.stderr
    )
    assert lockfile.read(project / lockfile.LOCK_FILE).platforms == (ARM64,)


def test_a_variant_index_build_for_arm64_is_locked_from_its_index(tmp_path: Path) -> None:
    # GH200 with a 570 driver: PyPI's CUDA 13.0 build needs 580, so the cu128 index's aarch64
    # build is chosen. That index is unreachable from here (as in test_lock's amd64 case): the
    # lock must ask it, name its host among those that did not answer, and write nothing.
    project = tmp_path / "gh"
    project.mkdir()
    (project / "reprobuild.toml").write_text(
        f'name = "lab/gh"\npython = "3.11"\ntorch = "2.11.*"\nbase = "{ARM64_BASE}"\n'
        '[target]\ngpus = ["GH200"]\ndriver = "570.133.20"\n'
    )
    resolved = reprobuild("-C", str(project), "resolve")
    assert resolved.returncode == 0, resolved.stderr
    assert "install    torch==2.11.0+cu128 from https://download.pytorch.org/whl/cu128" in (
        resolved.stdout
    )
    result = reprobuild("-C", str(project), "lock", "--debian-mirror", DEBIAN_MIRROR)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "error: the package index (download.pytorch.org, pypi.org) did not answer" in (
        result.stderr
    )
    assert not (project / lockfile.LOCK_FILE).exists()
