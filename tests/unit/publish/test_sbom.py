"""The SBOM: valid CycloneDX 1.6 by the library's strict schema validator, exact purls and hashes
for the example lock and a bootstrapped base, the same bytes every time, and `check`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from builder import __version__
from builder.errors import PublishError
from builder.lock import lockfile
from builder.lock.model import BaseLock, Lock, LockedPackage
from builder.publish import sbom
from tests.locks import GPU_PACKAGES, make_lock
from tests.locks import wheel as fake_wheel
from tests.records import MANIFEST

ROOT = Path(__file__).parents[3]
EXAMPLE = ROOT / "images" / "example" / "reprobuild.lock"
IMAGE = "127.0.0.1:5055/lab/model"
OTHER = "sha256:" + "12" * 32
TIMESTAMP = "2026-12-06T14:00:00Z"
IMAGE_PURL = f"pkg:oci/model@{MANIFEST}?repository_url={IMAGE}"
BASE_DIGEST = "sha256:b1add8a6f2aca6bcfcf0b9c9b522352f7ce0d62a3d556a2f2f32511aa0cca250"
TORCH = "pkg:pypi/torch@2.5.1"
CUDNN_WHEEL = "pkg:pypi/nvidia-cudnn-cu12@9.1.0.70"
SNAPSHOT = "2026-11-01T00:00:00Z"
MIRROR = "http://snapshot.debian.org/archive/debian/20261101T000000Z"


def wheel(name: str, version: str, url: str | None = None) -> LockedPackage:
    """tests.locks's wheel with a sha256 of hex digits, as a lock made by uv has."""
    made = fake_wheel(name, version, url)
    return replace(made, sha256=hashlib.sha256(made.filename.encode()).hexdigest())


def hexed(lock: Lock) -> Lock:
    packages = tuple(wheel(p.name, p.version, p.url) for p in lock.python.packages)
    return replace(lock, python=replace(lock.python, packages=packages))


def example() -> Lock:
    return lockfile.read(EXAMPLE)


def bootstrapped() -> Lock:
    base = BaseLock(
        kind="bootstrap",
        reference="debian:bookworm",
        python="3.11.2",
        suite="bookworm",
        python_source="apt",
        snapshot=SNAPSHOT,
        mirror=MIRROR,
        packages=("libc6=2.36-9+deb12u9", "python3=3.11.2-1+b1", "zlib1g=1:1.2.13.dfsg-1"),
    )
    # The system layer upgrades libc6 over the base's.
    system = ("curl=7.88.1-10+deb12u15", "libc6=2.36-9+deb12u10")
    return hexed(make_lock(base=base, system=system))


def made(lock: Lock, digest: str = MANIFEST) -> bytes:
    return sbom.sbom(lock, image_name=IMAGE, manifest_digest=digest, timestamp=TIMESTAMP)


def parsed(data: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(data)
    return document


def components(data: bytes) -> dict[str, dict[str, Any]]:
    return {component["bom-ref"]: component for component in parsed(data)["components"]}


def depends(data: bytes) -> dict[str, list[str]]:
    return {d["ref"]: d.get("dependsOn", []) for d in parsed(data)["dependencies"]}


def named(data: bytes, supplier: str) -> dict[str, str]:
    return {
        c["name"]: c["version"]
        for c in components(data).values()
        if c.get("supplier", {}).get("name") == supplier
    }


@pytest.mark.parametrize("lock", [example(), bootstrapped(), hexed(make_lock(cuda=None))])
def test_it_is_valid_cyclonedx_1_6(lock: Lock) -> None:
    data = made(lock)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode()) is None
    document = parsed(data)
    assert (document["bomFormat"], document["specVersion"]) == ("CycloneDX", "1.6")


def test_it_names_the_image_by_its_manifest_digest_and_the_tool() -> None:
    metadata = parsed(made(example()))["metadata"]
    assert metadata["component"] == {
        "bom-ref": IMAGE_PURL,
        "name": IMAGE,
        "purl": IMAGE_PURL,
        "type": "container",
        "version": MANIFEST,
    }
    assert metadata["timestamp"] == "2026-12-06T14:00:00+00:00"
    assert metadata["tools"]["components"] == [
        {"name": "reprobuild", "type": "application", "version": __version__}
    ]


def test_the_serial_number_follows_the_manifest_digest() -> None:
    serial = parsed(made(example()))["serialNumber"]
    assert serial.startswith("urn:uuid:")
    assert serial[len("urn:uuid:") :][14] == "5"  # a uuid5: version nibble
    assert parsed(made(hexed(make_lock())))["serialNumber"] == serial
    assert parsed(made(example(), OTHER))["serialNumber"] != serial


def test_every_wheel_by_purl_hash_and_url() -> None:
    data = made(example())
    found = components(data)
    assert found[TORCH] == {
        "bom-ref": TORCH,
        "externalReferences": [
            {
                "type": "distribution",
                "url": "https://files.pythonhosted.org/packages/d1/35/e8b2daf02ce933e4518e6f5682"
                "c72fd0ed66c15910ea1fb4168f442b71c4/torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl",
            }
        ],
        "hashes": [
            {
                "alg": "SHA-256",
                "content": "de5b7d6740c4b636ef4db92be922f0edc425b65ed78c5076c43c42d362a45457",
            }
        ],
        "name": "torch",
        "purl": TORCH,
        "type": "library",
        "version": "2.5.1",
    }
    wheels = {f"pkg:pypi/{p.name}@{p.version}" for p in example().python.packages}
    assert len(wheels) == 24
    assert wheels <= set(found)


def test_an_arm64_image_names_its_base_and_packages_arm64() -> None:
    lock = example()
    arm = replace(
        lock,
        resolution={**lock.resolution, "platform": "linux/arm64"},
        python=replace(lock.python, platform="aarch64-manylinux_2_28"),
        system=replace(lock.system, packages=("zlib1g=1:1.2.13.dfsg-1",)),
    )
    found = components(made(arm))
    base = (
        f"pkg:oci/python@{BASE_DIGEST}?arch=arm64&repository_url=docker.io/library/python"
        "&tag=3.11-slim-bookworm"
    )
    assert base in found
    assert "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=arm64&distro=debian-bookworm" in found


def test_a_local_wheel_has_no_download_url() -> None:
    local = wheel("mylib", "1.0", "wheels/mylib-1.0-py3-none-any.whl")
    found = components(made(hexed(make_lock(packages=(local,)))))["pkg:pypi/mylib@1.0"]
    assert "externalReferences" not in found
    assert found["hashes"] == [{"alg": "SHA-256", "content": local.sha256}]


def test_the_registry_base_by_its_digest() -> None:
    purl = (
        f"pkg:oci/python@{BASE_DIGEST}?arch=amd64&repository_url=docker.io/library/python"
        "&tag=3.11-slim-bookworm"
    )
    assert components(made(example()))[purl] == {
        "bom-ref": purl,
        "name": "python",
        "purl": purl,
        "type": "container",
        "version": BASE_DIGEST,
    }


def test_the_cuda_libraries_torch_loads_each_from_its_wheel() -> None:
    data = made(example())
    libraries = named(data, "NVIDIA")
    assert {name: libraries[name] for name in ("CUDA runtime", "cuDNN", "NCCL")} == {
        "CUDA runtime": "12.4.127",
        "cuDNN": "9.1.0.70",
        "NCCL": "2.21.5",
    }
    assert libraries["cuBLAS"] == "12.4.5.8"
    assert len(libraries) == 12  # one per nvidia-* wheel of the example's closure
    assert depends(data)[CUDNN_WHEEL] == ["cuda/cudnn@9.1.0.70"]


def test_a_torch_that_bundles_cuda_carries_the_resolved_libraries() -> None:
    url = "https://download.pytorch.org/whl/cu124/torch-2.5.1%2Bcu124-cp311-cp311-linux_x86_64.whl"
    data = made(make_lock(packages=(wheel("torch", "2.5.1+cu124", url),)))
    assert named(data, "NVIDIA") == {"cuDNN": "9.1.0.70"}  # the only one make_lock resolves
    assert depends(data)["pkg:pypi/torch@2.5.1%2Bcu124"] == ["cuda/cudnn@9.1.0.70"]


def test_a_cpu_only_lock_has_no_cuda_libraries() -> None:
    data = made(hexed(make_lock(cuda=None, packages=GPU_PACKAGES)))
    assert named(data, "NVIDIA") == {}
    assert CUDNN_WHEEL in components(data)  # the wheel is still listed, as any wheel


def test_the_image_depends_on_every_top_level_component() -> None:
    data = made(example())
    top = {ref for ref in components(data) if not ref.startswith("cuda/")}
    assert set(depends(data)[IMAGE_PURL]) == top


def test_a_bootstrapped_base_and_its_system_packages() -> None:
    data = made(bootstrapped())
    found = components(data)
    zlib = "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-bookworm"
    assert found[zlib] == {
        "bom-ref": zlib,
        "name": "zlib1g",
        "properties": [
            {"name": "reprobuild:apt:mirror", "value": MIRROR},
            {"name": "reprobuild:apt:snapshot", "value": SNAPSHOT},
        ],
        "purl": zlib,
        "type": "library",
        "version": "1:1.2.13.dfsg-1",
    }
    curl = "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u15?arch=amd64&distro=debian-bookworm"
    assert found[curl]["properties"][1] == {
        "name": "reprobuild:apt:snapshot",
        "value": "2026-11-22T00:00:00Z",
    }
    debs = sorted(
        c["name"] + "=" + c["version"]
        for c in found.values()
        if c["bom-ref"].startswith("pkg:deb/")
    )
    assert debs == [
        "curl=7.88.1-10+deb12u15",
        "libc6=2.36-9+deb12u10",
        "python3=3.11.2-1+b1",
        "zlib1g=1:1.2.13.dfsg-1",
    ]
    base = found[f"debian/bookworm@{SNAPSHOT}"]
    assert (base["type"], base["name"], base["version"]) == (
        "operating-system",
        "debian",
        "bookworm",
    )


def test_the_same_inputs_give_the_same_bytes_in_any_process() -> None:
    data = made(example())
    assert made(example()) == data
    script = (
        "import sys; from pathlib import Path; from builder.lock import lockfile; "
        "from builder.publish import sbom; "
        f"sys.stdout.buffer.write(sbom.sbom(lockfile.read(Path({str(EXAMPLE)!r})), "
        f"image_name={IMAGE!r}, manifest_digest={MANIFEST!r}, timestamp={TIMESTAMP!r}))"
    )
    for seed in ("1", "2"):
        environ = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, check=True, env=environ, cwd=ROOT
        )
        assert done.stdout == data
    assert data.endswith(b"}\n")


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(PublishError, match="manifest digest"):
        made(example(), "sha256:abc")
    with pytest.raises(PublishError, match="timestamp"):
        sbom.sbom(example(), image_name=IMAGE, manifest_digest=MANIFEST, timestamp="yesterday")
    with pytest.raises(PublishError, match="timestamp"):
        sbom.sbom(example(), image_name=IMAGE, manifest_digest=MANIFEST, timestamp="2026-12-06")


def test_a_wheel_pinned_by_no_sha256_is_refused() -> None:
    with pytest.raises(PublishError, match=r"torch 2\.5\.1 by the sha256 'to"):
        made(make_lock(packages=(fake_wheel("torch", "2.5.1"),)))


def test_check_accepts_the_sbom_of_this_image_only() -> None:
    data = made(example())
    assert sbom.check(data, MANIFEST) is None
    assert sbom.check(data, OTHER) == f"it describes {MANIFEST}, not {OTHER}"
    assert sbom.check(made(example(), OTHER), MANIFEST) == f"it describes {OTHER}, not {MANIFEST}"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x89PNG\r\n", "it is not JSON"),
        (b"{", "it is not JSON"),
        (b"[" * 100_000, "it is not JSON"),
        (b"[1, 2]", "it is not a CycloneDX document"),
        (b'{"bomFormat": "SPDX"}', "it is not a CycloneDX document"),
        (b'{"bomFormat": "CycloneDX"}', "it names no image"),
        (b'{"bomFormat": "CycloneDX", "metadata": []}', "it names no image"),
        (b'{"bomFormat": "CycloneDX", "metadata": {"component": {"purl": 3}}}', "it names no"),
        (b'{"bomFormat": "CycloneDX", "metadata": {"component": {"purl": "x"}}}', "it names no"),
        (
            b'{"bomFormat": "CycloneDX", "metadata": {"component": {"purl": "pkg:pypi/a@1"}}}',
            "it names no image",
        ),
    ],
)
def test_check_names_what_is_wrong(data: bytes, problem: str) -> None:
    found = sbom.check(data, MANIFEST)
    assert found is not None
    assert found.startswith(problem)
