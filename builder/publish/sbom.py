"""Lock + pushed image -> a CycloneDX 1.6 JSON SBOM of the image: what it is made of, by purl.

The document is built with CycloneDX's reference library and its purls with packageurl's, so
both follow their specifications; it is a pure function of its arguments (same lock, image and
timestamp -> same bytes), so a reader can make it again and compare.

Components: the image (metadata.component, `pkg:oci` by manifest digest); the base image (a
registry base by its manifest digest for the image's platform, or the Debian suite a
bootstrapped base was made from); every system package (`pkg:deb`, with the archive snapshot
apt read it from); every wheel (`pkg:pypi`, with its sha256 and download URL); and the CUDA
libraries torch loads (CUDA runtime, cuDNN, NCCL, cuBLAS, ...), each a dependency of the wheel
that ships it (an nvidia-* wheel, or torch's own where it bundles them). The image depends on
the base, the system packages and the wheels; the CUDA libraries hang off their wheels.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from builder import __version__
from builder.errors import PublishError
from builder.lock.apt import UBUNTU_SUITES
from builder.reference import DIGEST, DOCKER_HUB, ImageReference

if TYPE_CHECKING:
    from builder.lock.model import Lock, LockedPackage

# Serial numbers are uuid5s of the manifest digest in this namespace: one image, one serial.
SERIALS = uuid.uuid5(uuid.NAMESPACE_URL, "https://reprobuild.dev/sbom")
SNAPSHOT_PROPERTY = "reprobuild:apt:snapshot"
MIRROR_PROPERTY = "reprobuild:apt:mirror"
# The CUDA libraries of NVIDIA's wheels, by the wheel's name without "nvidia-" and "-cuNN".
CUDA_WHEELS = {
    "cublas": "cuBLAS",
    "cuda-cupti": "CUPTI",
    "cuda-nvrtc": "NVRTC",
    "cuda-runtime": "CUDA runtime",
    "cudnn": "cuDNN",
    "cufft": "cuFFT",
    "cufile": "cuFile",
    "curand": "cuRAND",
    "cusolver": "cuSOLVER",
    "cusparse": "cuSPARSE",
    "cusparselt": "cuSPARSELt",
    "nccl": "NCCL",
    "nvjitlink": "nvJitLink",
    "nvtx": "NVTX",
}
# The libraries the resolution names, by its key, and the wheel library each one is.
RESOLVED_CUDA = {"cuda_runtime": "cuda-runtime", "cudnn": "cudnn", "nccl": "nccl"}
_NVIDIA_WHEEL = re.compile(r"^nvidia-(?P<library>.+?)(?:-cu\d+)?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


def sbom(lock: Lock, *, image_name: str, manifest_digest: str, timestamp: str) -> bytes:
    """The SBOM of the image `image_name@manifest_digest` built from `lock`, as of `timestamp`
    (an RFC 3339 UTC time such as 2026-12-06T14:00:00Z)."""
    if not DIGEST.match(manifest_digest):
        raise PublishError(
            f"the SBOM needs the image's manifest digest as sha256:<64 hex>, not "
            f"{manifest_digest!r}: push the build first (`reprobuild build --push`)."
        )
    image = _image_component(image_name, manifest_digest)
    bom = Bom(
        serial_number=uuid.uuid5(SERIALS, manifest_digest),
        metadata=BomMetaData(
            timestamp=_moment(timestamp),
            component=image,
            tools=ToolRepository(components=[_tool()]),
        ),
    )
    wheels = {package.name: _wheel_component(package) for package in lock.python.packages}
    top = [_base_component(lock), *_deb_components(lock), *wheels.values()]
    bom.components.update(top)
    bom.register_dependency(image, top)
    for library, carrier in _cuda_components(lock, wheels):
        bom.components.add(library)
        bom.register_dependency(carrier, [library])
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    return (text + "\n").encode()


def _moment(timestamp: str) -> datetime:
    # fromisoformat reads "Z" only from Python 3.11 on.
    text = timestamp.removesuffix("Z") + "+00:00" if timestamp.endswith("Z") else timestamp
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise PublishError(
            f"the SBOM's timestamp {timestamp!r} is not an RFC 3339 time with a zone, e.g. "
            "2026-12-06T14:00:00Z."
        )
    return moment.astimezone(timezone.utc)


def _tool() -> Component:
    return Component(type=ComponentType.APPLICATION, name="reprobuild", version=__version__)


def _oci_purl(repository: str, digest: str, url: str, **qualifiers: str) -> str:
    """`pkg:oci/NAME@sha256:...?repository_url=...`: the purl spec's form for an OCI image."""
    name = repository.rsplit("/", 1)[-1]
    qualifiers["repository_url"] = url
    return str(PackageURL(type="oci", name=name, version=digest, qualifiers=qualifiers).to_string())


def image_purl(image_name: str, manifest_digest: str) -> str:
    """The pushed image's purl: repository_url is the name it was pushed under, as written."""
    reference = ImageReference.parse(image_name)
    return _oci_purl(reference.repository, manifest_digest, reference.written_name)


def _image_component(image_name: str, manifest_digest: str) -> Component:
    purl = image_purl(image_name, manifest_digest)
    return Component(
        type=ComponentType.CONTAINER,
        name=ImageReference.parse(image_name).written_name,
        version=manifest_digest,
        purl=PackageURL.from_string(purl),
        bom_ref=purl,
    )


def image_arch(lock: Lock) -> str:
    """The image's architecture as purls name it: amd64, arm64."""
    return _ARCHES.get(lock.python.machine, "amd64")


def base_purl(lock: Lock) -> str | None:
    """The registry base's purl (its manifest for the image's platform), None for a bootstrapped
    base."""
    base = lock.base
    if base.kind != "registry":
        return None
    reference = ImageReference.parse(base.image)
    registry = "docker.io" if reference.registry == DOCKER_HUB else reference.registry
    url = f"{registry}/{reference.repository}"
    tag = ImageReference.parse(base.reference).tag
    qualifiers = {"arch": image_arch(lock), **({"tag": tag} if tag else {})}
    return _oci_purl(reference.repository, base.digest, url, **qualifiers)


def _base_component(lock: Lock) -> Component:
    base = lock.base
    purl = base_purl(lock)
    if purl is None:
        # A bootstrapped base has no upstream image: it is the suite's packages at the snapshot
        # (listed one by one among the system packages).
        return Component(
            type=ComponentType.OPERATING_SYSTEM,
            name="debian",
            version=base.suite,
            description=f"Debian {base.suite} bootstrapped from the archive at {base.snapshot}",
            bom_ref=f"debian/{base.suite}@{base.snapshot}",
            properties=_archive(base.snapshot, base.mirror),
        )
    return Component(
        type=ComponentType.CONTAINER,
        name=ImageReference.parse(base.image).name,
        version=base.digest,
        purl=PackageURL.from_string(purl),
        bom_ref=purl,
    )


def _archive(snapshot: str, mirror: str) -> list[Property]:
    # The snapshot stays out of the purl: a purl names the package, which scanners match on;
    # where to fetch those exact bytes again is this build's fact, kept as properties.
    return [
        Property(name=SNAPSHOT_PROPERTY, value=snapshot),
        Property(name=MIRROR_PROPERTY, value=mirror),
    ]


def system_packages(lock: Lock) -> dict[str, tuple[str, str, str]]:
    """name -> (version, snapshot, mirror) of every Debian package in the image: the
    bootstrapped base's, then the system layer's (apt replaces a base version it upgrades)."""
    found: dict[str, tuple[str, str, str]] = {}
    for packages, snapshot, mirror in (
        (lock.base.packages, lock.base.snapshot, lock.base.mirror),
        (lock.system.packages, lock.system.snapshot, lock.system.mirror),
    ):
        for pin in packages:
            name, _, version = pin.partition("=")
            found[name] = (version, snapshot, mirror)
    return dict(sorted(found.items()))


def deb_purl(lock: Lock, name: str, version: str) -> str:
    """`pkg:deb/debian/NAME@VERSION?arch=amd64&distro=debian-SUITE` (ubuntu on Ubuntu bases)."""
    vendor = "ubuntu" if lock.base.suite in UBUNTU_SUITES else "debian"
    # The lock keeps no per-package architecture; an arch-all package is named as the image's.
    arch = image_arch(lock)
    purl = PackageURL(
        type="deb",
        namespace=vendor,
        name=name,
        version=version,
        qualifiers={"arch": arch, "distro": f"{vendor}-{lock.base.suite}"},
    )
    return str(purl.to_string())


def _deb_components(lock: Lock) -> Iterator[Component]:
    for name, (version, snapshot, mirror) in system_packages(lock).items():
        purl = deb_purl(lock, name, version)
        yield Component(
            type=ComponentType.LIBRARY,
            name=name,
            version=version,
            purl=PackageURL.from_string(purl),
            bom_ref=purl,
            properties=_archive(snapshot, mirror),
        )


def wheel_sha256(package: LockedPackage) -> str:
    """The wheel's sha256 as the lock pins it, refused unless it is 64 hex digits (the SBOM's
    and the provenance's schemas take no other)."""
    if not _SHA256.match(package.sha256):
        raise PublishError(
            f"the lock pins {package.name} {package.version} by the sha256 {package.sha256!r}, "
            "not 64 lower-case hex digits: make the lock again with `reprobuild lock --upgrade`."
        )
    return package.sha256


def wheel_purl(package: LockedPackage) -> str:
    return str(PackageURL(type="pypi", name=package.name, version=package.version).to_string())


def _wheel_component(package: LockedPackage) -> Component:
    purl = wheel_purl(package)
    references = (
        [ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(package.url))]
        if package.url.startswith("https://")
        else []
    )
    return Component(
        type=ComponentType.LIBRARY,
        name=package.name,
        version=package.version,
        purl=PackageURL.from_string(purl),
        bom_ref=purl,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=wheel_sha256(package))],
        external_references=references,
    )


def _cuda_components(
    lock: Lock, wheels: dict[str, Component]
) -> Iterator[tuple[Component, Component]]:
    """(library, the wheel component that ships it) for each CUDA library in the image: none on
    a CPU-only lock."""
    if lock.resolution.get("cuda") is None:
        return
    shipped = dict(_nvidia_wheels(lock))
    resolution: dict[str, object] = dict(lock.resolution)
    for key, library in RESOLVED_CUDA.items():
        version = resolution.get(key)
        if library not in shipped and isinstance(version, str) and "torch" in wheels:
            # Not in a wheel of its own: torch's wheel bundles it (the variant indexes' builds).
            shipped[library] = (version, "torch")
    for library, (version, wheel) in sorted(shipped.items()):
        yield _cuda_component(library, version), wheels[wheel]


def _nvidia_wheels(lock: Lock) -> Iterator[tuple[str, tuple[str, str]]]:
    # The wheel's version is the library's: nvidia-cublas-cu12 12.4.5.8 ships cuBLAS 12.4.5.8.
    for package in lock.python.packages:
        match = _NVIDIA_WHEEL.match(package.name)
        if match is not None:
            yield match["library"], (package.version, package.name)


def _cuda_component(library: str, version: str) -> Component:
    return Component(
        type=ComponentType.LIBRARY,
        name=CUDA_WHEELS.get(library, library),
        version=version,
        supplier=OrganizationalEntity(name="NVIDIA"),
        # No purl of its own: the library is not a package; the wheel that ships it has one.
        bom_ref=f"cuda/{library}@{version}",
    )


def check(data: bytes, manifest_digest: str) -> str | None:
    """None when `data` is a CycloneDX JSON SBOM of the image with this manifest digest; else
    what is wrong with it, as a short phrase."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return "it is not JSON"
    if not isinstance(document, dict) or document.get("bomFormat") != "CycloneDX":
        return "it is not a CycloneDX document"
    metadata = document.get("metadata")
    component = metadata.get("component") if isinstance(metadata, dict) else None
    purl = component.get("purl") if isinstance(component, dict) else None
    described = _oci_digest(purl)
    if described is None:
        return "it names no image (metadata.component has no pkg:oci purl)"
    if described != manifest_digest:
        return f"it describes {described}, not {manifest_digest}"
    return None


def _oci_digest(purl: object) -> str | None:
    if not isinstance(purl, str):
        return None
    try:
        parsed = PackageURL.from_string(purl)
    except ValueError:
        return None
    return parsed.version if parsed.type == "oci" else None
