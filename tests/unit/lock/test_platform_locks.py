"""A lock of several platforms: its file layout, the lock of each platform's image, the platform
a verb asks for, and the names, index and record a build of several gives. No resolver, index or
engine: the locks are built in memory (tests/integration/test_arm64.py builds real ones)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from builder.build import buildrecord, pushindex
from builder.build.build import platform_tag
from builder.build.buildrecord import PlatformImage
from builder.build.gc import final_reference
from builder.engine.emulation import emulation_problem
from builder.engine.registry import OCI_INDEX
from builder.errors import PlatformChoiceError
from builder.knowledge import AMD64, ARM64
from builder.lock import lockfile, wheels
from builder.lock.lockfile import CurrentLock, chosen_platforms, one_platform
from builder.lock.model import BaseLock, Lock, PlatformLock
from builder.render import plan
from tests.cli import reprobuild
from tests.locks import make_lock, wheel
from tests.records import make_record

LOCK = "sha256:" + "0123456789ab" + "f" * 52
SNAPSHOT = "2026-11-01T00:00:00Z"


def two_platforms() -> Lock:
    amd64 = make_lock(cuda=None, label="2.10.0", packages=(wheel("numpy", "2.1.3"),))
    aarch64 = wheel("torch", "2.10.0")
    arm = PlatformLock(
        resolution={**amd64.resolution, "platform": ARM64},
        base=replace(amd64.base, digest="sha256:" + "a" * 64),
        system=amd64.system,
        python=replace(
            amd64.python,
            platform="aarch64-manylinux_2_28",
            packages=(wheel("numpy", "2.1.3"), aarch64),
        ),
    )
    return replace(amd64, other_platforms=(arm,))


def test_a_lock_of_one_platform_has_no_other_platforms_table() -> None:
    lock = make_lock()
    text = lockfile.dumps(lock)
    assert "other_platforms" not in text and "platform = " not in text.split("[python]")[0]
    assert lock.platforms == (AMD64,) and lock.on(AMD64) == lock


def test_each_further_platform_is_a_table_of_its_own_and_reads_back() -> None:
    lock = two_platforms()
    text = lockfile.dumps(lock)
    assert text.count("[[other_platforms]]") == 1
    assert '[other_platforms.resolution]\nname = "lab/train"' in text
    assert 'platform = "linux/arm64"' in text
    assert lockfile.dumps(lockfile.loads(text)) == text  # TOML drops the None values
    assert lock.platforms == (AMD64, ARM64)
    arm = lock.on(ARM64)
    assert (arm.platform, arm.python.platform, arm.other_platforms) == (
        ARM64,
        "aarch64-manylinux_2_28",
        (),
    )
    assert arm.base.digest == "sha256:" + "a" * 64 and arm.spec_hash == lock.spec_hash
    assert [each.platform for each in lock.each_platform()] == [AMD64, ARM64]
    with pytest.raises(KeyError):
        make_lock().on(ARM64)


def test_a_hand_edit_of_another_platform_is_refused() -> None:
    text = lockfile.dumps(two_platforms())
    edited = text.replace(
        'platform = "aarch64-manylinux_2_28"', 'platform = "x86_64-manylinux_2_28"'
    )
    with pytest.raises(Exception, match="edited by hand"):
        lockfile.loads(edited)


def test_the_wheelhouse_of_every_platform_holds_each_wheel_once() -> None:
    every = two_platforms().with_every_wheel()
    assert [p.filename for p in every.python.packages] == [
        "numpy-2.1.3-py3-none-any.whl",
        "torch-2.10.0-py3-none-any.whl",
    ]


def current(lock: Lock) -> CurrentLock:
    return CurrentLock(lock, Path("/p/reprobuild.lock"), Path("/p"), lockfile.dumps(lock))


def test_the_platforms_a_verb_asks_for() -> None:
    both = current(two_platforms())
    assert chosen_platforms(both, []) == (AMD64, ARM64)
    assert chosen_platforms(both, [ARM64]) == (ARM64,)
    assert chosen_platforms(both, [ARM64, AMD64]) == (AMD64, ARM64)  # the lock's order
    with pytest.raises(PlatformChoiceError) as caught:
        chosen_platforms(current(make_lock()), [ARM64])
    assert str(caught.value) == (
        "reprobuild.lock pins linux/amd64, not linux/arm64: add 'linux/arm64' to platforms in "
        "the spec (and run `reprobuild lock`), or choose a platform the lock pins."
    )
    assert caught.value.exit_code == 2


def test_the_local_name_of_an_arm64_image_says_so() -> None:
    assert final_reference("lab/train", LOCK) == "lab/train:0123456789ab"
    assert final_reference("lab/train", LOCK, ARM64) == "lab/train:0123456789ab-arm64"


def test_the_image_index_is_canonical_and_in_the_given_order() -> None:
    entries = [
        {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": "sha256:" + "1" * 64,
            "size": 1234,
            "platform": pushindex.platform_object(AMD64),
        },
        {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": "sha256:" + "2" * 64,
            "size": 987,
            "platform": pushindex.platform_object(ARM64),
        },
    ]
    body = pushindex.index_bytes(entries)
    assert body == (
        b'{"manifests":[{"digest":"sha256:' + b"1" * 64 + b'","mediaType":'
        b'"application/vnd.docker.distribution.manifest.v2+json","platform":{"architecture":'
        b'"amd64","os":"linux"},"size":1234},{"digest":"sha256:' + b"2" * 64 + b'","mediaType":'
        b'"application/vnd.docker.distribution.manifest.v2+json","platform":{"architecture":'
        b'"arm64","os":"linux","variant":"v8"},"size":987}],"mediaType":'
        b'"application/vnd.oci.image.index.v1+json","schemaVersion":2}'
    )
    assert json.loads(body)["mediaType"] == OCI_INDEX


def test_a_record_of_several_platforms_reads_back(tmp_path: Path) -> None:
    arm = PlatformImage(ARM64, "lab/train:0123456789ab-arm64", "sha256:" + "9" * 64)
    record = make_record(LOCK, platform=AMD64, other_platforms=(arm,))
    buildrecord.write(tmp_path, record)
    read = buildrecord.read(tmp_path)
    assert read == record and read.platforms == (AMD64, ARM64)
    pushed = replace(arm, pushed="r/lab@sha256:" + "8" * 64)
    buildrecord.write(tmp_path, replace(record, other_platforms=(pushed,), pushed="r/lab@x"))
    assert buildrecord.pushed_build(tmp_path, LOCK, ARM64) == "r/lab@sha256:" + "8" * 64
    assert buildrecord.pushed_build(tmp_path, LOCK) == "r/lab@x"


def test_a_record_from_before_platforms_is_amd64s(tmp_path: Path) -> None:
    document = json.loads(buildrecord.dumps(make_record(LOCK)))
    for key in ("platform", "other_platforms", "pushed_index"):
        del document[key]
    (tmp_path / "reprobuild.build.json").write_text(json.dumps(document))
    read = buildrecord.read(tmp_path)
    assert (read.platform, read.other_platforms, read.pushed_index) == (AMD64, (), None)


def test_the_wheel_platform_of_each_machine() -> None:
    assert wheels.uv_platform() == "x86_64-manylinux_2_28"
    assert wheels.uv_platform("aarch64") == "aarch64-manylinux_2_28"
    assert wheels.platform_name("aarch64") == "linux aarch64 (manylinux_2_28)"
    assert wheels.platforms("aarch64")[:2] == ["manylinux_2_28_aarch64", "manylinux_2_27_aarch64"]
    assert wheels.platforms("aarch64")[-1] == "manylinux1_aarch64"


def test_one_platform_for_an_export() -> None:
    both = current(two_platforms())
    assert one_platform(current(make_lock()), None, "--export") == AMD64
    assert one_platform(both, ARM64, "--export") == ARM64
    with pytest.raises(PlatformChoiceError) as caught:
        one_platform(both, None, "--export")
    assert str(caught.value) == (
        "reprobuild.lock pins linux/amd64, linux/arm64, and --export is of one platform: give "
        "--platform linux/amd64 or --platform linux/arm64."
    )


def test_a_record_of_another_platform_takes_its_own_lock() -> None:
    lock = two_platforms()
    assert lock.on_or_first(ARM64).python.platform == "aarch64-manylinux_2_28"
    assert make_lock().on_or_first(ARM64).platform == AMD64  # not pinned: the first's


def test_a_bootstrapped_base_is_named_per_architecture() -> None:
    bootstrapped = replace(
        make_lock(),
        base=BaseLock("bootstrap", "debian:bookworm", "3.11.2", "bookworm", snapshot=SNAPSHOT),
    )
    arm = replace(bootstrapped, resolution={**bootstrapped.resolution, "platform": ARM64})
    assert plan.bootstrap_image_name(bootstrapped) == (
        "reprobuild-base/debian-bookworm:20261101t000000z"
    )
    assert (
        plan.bootstrap_image_name(arm) == "reprobuild-base/debian-bookworm:20261101t000000z-arm64"
    )


def test_each_platform_is_pushed_at_a_tag_of_its_own() -> None:
    assert platform_tag("r.io/lab/train:v1", ARM64) == "r.io/lab/train:v1-arm64"
    assert (
        platform_tag("127.0.0.1:5055/lab/train", AMD64) == "127.0.0.1:5055/lab/train:latest-amd64"
    )


def test_emulation_is_found_registered_or_its_absence_named(tmp_path: Path) -> None:
    assert emulation_problem(ARM64, ARM64, tmp_path) is None  # native: nothing to check
    assert emulation_problem("linux/riscv64", AMD64, tmp_path) is None  # no qemu known: as is
    assert emulation_problem(ARM64, AMD64, tmp_path) == f"binfmt_misc is not mounted at {tmp_path}"
    (tmp_path / "status").write_text("disabled\n")
    assert emulation_problem(ARM64, AMD64, tmp_path) == f"binfmt_misc is disabled at {tmp_path}"
    (tmp_path / "status").write_text("enabled\n")
    assert emulation_problem(ARM64, AMD64, tmp_path) == (
        f"no qemu-aarch64 is registered in {tmp_path}"
    )
    entry = tmp_path / "qemu-aarch64"
    entry.write_text("disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n")
    assert emulation_problem(ARM64, AMD64, tmp_path) == (
        f"qemu-aarch64 is registered in {tmp_path} but disabled"
    )
    entry.write_text("enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: P\n")
    assert emulation_problem(ARM64, AMD64, tmp_path) == (
        f"qemu-aarch64 is registered in {tmp_path} without the F flag, which containers need"
    )
    entry.write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n")
    assert emulation_problem(ARM64, AMD64, tmp_path) is None
    assert emulation_problem(AMD64, ARM64, tmp_path) == (
        f"no qemu-x86_64 is registered in {tmp_path}"
    )


def test_lock_refuses_an_export_of_no_one_platform_before_locking(tmp_path: Path) -> None:
    spec = 'name = "lab/x"\npython = "3.11"\ntorch = "2.11.0"\n'
    (tmp_path / "reprobuild.toml").write_text(spec + 'platforms = ["linux/amd64", "linux/arm64"]\n')
    result = reprobuild("-C", str(tmp_path), "lock", "--export", "pylock.toml")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "error: reprobuild.toml builds for linux/amd64, linux/arm64, and --export is of one "
        "platform: give --platform linux/amd64 or --platform linux/arm64.\n"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["reprobuild.toml"]
    alone = reprobuild("-C", str(tmp_path), "lock", "--platform", "linux/arm64")
    assert alone.returncode == 2 and alone.stdout == ""
    assert alone.stderr.splitlines()[-1] == (
        "Error: --platform chooses the closure --export writes: give --export too."
    )
