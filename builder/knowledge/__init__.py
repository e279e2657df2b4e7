"""The GPU compatibility knowledge base: versioned data files shipped inside the package.

Five files under `data/`, every row naming its source and the date it was read:
- `torch.json`: one row per torch release x wheel variant (cu124, cpu, ...) x platform
  (linux/amd64, linux/arm64);
- `companions.json`: packages built per torch release (torchvision, torchaudio, triton) -> the
  torch release each version pairs with;
- `cuda.json`: CUDA family -> minimum driver (minor-version compatibility), CUDA release ->
  the driver of its full toolkit;
- `gpus.json`: GPU model names -> compute capability, and the CPU architecture of the
  superchips whose CPU comes with the GPU (Grace: arm64);
- `bases.json`: base image references -> digests, used when the registry cannot be reached.

`reprobuild knowledge refresh` regenerates the rows readable from package-index metadata.
The knowledge version is derived from the files' content, so two equal data sets always carry
one version and a lock can record which facts it was resolved with.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from builder import layout
from builder.compat import Arch, ComputeCapability, CudaVersion, DriverVersion
from builder.errors import KnowledgeError

DATA_FILES = ("torch.json", "cuda.json", "gpus.json", "bases.json", "companions.json")
# Added after the first knowledge folders were written: one without it loads as holding no rows
# (and keeps the version it had), and `knowledge refresh` writes it.
LATER_FILES = {"companions.json": b'{"companions": []}'}
PACKAGED_DATA = Path(__file__).parent / "data"
PYPI = "pypi"
AMD64 = "linux/amd64"
ARM64 = "linux/arm64"
PLATFORMS = (AMD64, ARM64)
# The wheel platform tag's machine for each image platform (as PEP 508 platform_machine reads it).
MACHINES = {AMD64: "x86_64", ARM64: "aarch64"}
# platform.machine() for each image platform's CPU: Linux's names, and Windows' and macOS' too.
MACHINE_PLATFORMS = {"x86_64": AMD64, "amd64": AMD64, "aarch64": ARM64, "arm64": ARM64}


def marker_environment(platform: str = AMD64, python: str | None = None) -> dict[str, str]:
    """The PEP 508 marker environment of a CPython image on `platform`, with no extra asked for;
    with `python` ("3.11" or "3.10.13"), that Python's versions (else the marker's reader's)."""
    environment = {
        "platform_system": "Linux",
        "sys_platform": "linux",
        "platform_machine": MACHINES[platform],
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    if python is not None:
        full = python if python.count(".") >= 2 else f"{python}.0"
        environment |= {
            "python_version": ".".join(full.split(".")[:2]),
            "python_full_version": full,
            "implementation_version": full,
        }
    return environment


def architecture(platform: str) -> str:
    """The platform's CPU as OCI, Debian and Kubernetes name it: arm64 of linux/arm64."""
    return platform.rsplit("/", maxsplit=1)[-1]


def machine_platform(machine: str) -> str | None:
    """The image platform a CPU runs natively, by its platform.machine(); None for others."""
    return MACHINE_PLATFORMS.get(machine.lower())


@dataclass(frozen=True)
class TorchBuild:
    """One installable torch wheel family: a release built for one CUDA variant (or CPU)."""

    torch: Version
    variant: str  # "cu124", "cpu"
    platform: str  # AMD64 or ARM64: the image platform its wheels install on
    wheel_version: str  # exact version on its index: "2.5.1" on PyPI, "2.5.1+cu121" elsewhere
    index: str  # "pypi" or the variant index URL
    pypi_default: bool
    cuda: CudaVersion | None
    cuda_runtime: str | None
    cudnn: str | None
    nccl: str | None
    archs: tuple[Arch, ...] | None  # None: not measured yet
    pythons: tuple[str, ...]
    source: str
    archs_source: str
    read: str

    @property
    def label(self) -> str:
        """The build's name on its platform: one torch release and variant may exist for
        several platforms (2.11.0+cu130 on linux/amd64 and linux/arm64)."""
        return f"{self.torch}+{self.variant}"

    @property
    def key(self) -> str:
        """The row's identity in the knowledge base: the label, and the platform unless amd64."""
        return _key(self.label, self.platform)

    @property
    def is_cpu(self) -> bool:
        return self.cuda is None

    @property
    def cubins(self) -> tuple[Arch, ...]:
        return tuple(arch for arch in self.archs or () if arch.kind == "sm")

    @property
    def ptx(self) -> tuple[Arch, ...]:
        return tuple(arch for arch in self.archs or () if arch.kind == "compute")

    def to_dict(self) -> dict[str, Any]:
        """The row as stored in torch.json."""
        return {
            "torch": str(self.torch),
            "variant": self.variant,
            "platform": self.platform,
            "wheel_version": self.wheel_version,
            "index": self.index,
            "pypi_default": self.pypi_default,
            "cuda": None if self.cuda is None else str(self.cuda),
            "cuda_runtime": self.cuda_runtime,
            "cudnn": self.cudnn,
            "nccl": self.nccl,
            "archs": None if self.archs is None else [str(arch) for arch in self.archs],
            "pythons": list(self.pythons),
            "source": self.source,
            "archs_source": self.archs_source,
            "read": self.read,
        }


def row_key(row: dict[str, Any]) -> str:
    """A torch.json row's identity: `2.11.0+cu130` on linux/amd64, `2.11.0+cu130 linux/arm64`
    on another platform (so the names written before arm64 rows existed stay as they were)."""
    return _key(f"{row['torch']}+{row['variant']}", row["platform"])


def _key(label: str, platform: str) -> str:
    return label if platform == AMD64 else f"{label} {platform}"


@dataclass(frozen=True)
class Companion:
    """A release of a package built for one torch release, and whose metadata says so."""

    package: str  # "torchvision", "torchaudio", "triton"
    version: str  # "0.20.1"; "3.8.*" where torch pins a compatible range (triton~=3.8.0)
    torch: Version  # the torch release it pairs with (public version)
    pinned_by: str  # whose Requires-Dist states the pair: the package itself, or "torch"
    pythons: tuple[str, ...] | None  # the Pythons the pin applies to; None: every one
    index: str  # "pypi" or the variant index URL the row was read from
    source: str
    read: str
    # The image platforms torch's pin applies on; None: every one. Up to torch 2.10 the pin is
    # marked `platform_machine == "x86_64"`, and triton has no aarch64 wheel before 3.5.0.
    platforms: tuple[str, ...] | None = None

    @property
    def per_variant(self) -> bool:
        """Built once per torch variant, so a variant index serves it as `0.20.1+cu121`."""
        return self.pinned_by != "torch"

    def admits(self, version: Version) -> bool:
        return SpecifierSet(f"=={self.version}").contains(version, prereleases=True)

    def applies_to(self, python: str) -> bool:
        return self.pythons is None or python in self.pythons

    def applies_on(self, platform: str) -> bool:
        return self.platforms is None or platform in self.platforms

    def to_dict(self) -> dict[str, Any]:
        """The row as stored in companions.json."""
        return {
            "package": self.package,
            "version": self.version,
            "torch": str(self.torch),
            "pinned_by": self.pinned_by,
            "pythons": None if self.pythons is None else list(self.pythons),
            "platforms": None if self.platforms is None else list(self.platforms),
            "index": self.index,
            "source": self.source,
            "read": self.read,
        }


@dataclass(frozen=True)
class CudaFamily:
    major: int
    min_driver: DriverVersion
    source: str


@dataclass(frozen=True)
class CudaRelease:
    cuda: CudaVersion
    toolkit_driver: DriverVersion
    source: str


@dataclass(frozen=True)
class KnownBase:
    """A base image digest known without a registry, for locking offline."""

    reference: str
    digest: str
    kind: str  # "linux/amd64 manifest" or "index"
    python: str | None
    suite: str
    source: str


@dataclass(frozen=True)
class GpuModel:
    name: str
    aliases: tuple[str, ...]
    capability: ComputeCapability
    source: str
    cpu: str | None = None  # "arm64" for a superchip with its own Arm CPU (Grace); else None
    cpu_source: str | None = None
    superchip: str | None = None  # "Grace Hopper": the family the CPU comes with

    @property
    def platform(self) -> str | None:
        """The only image platform this GPU's machine runs; None where its host CPU varies."""
        return ARM64 if self.cpu == "arm64" else None


def normalise_gpu_name(name: str) -> str:
    """Fold case, vendor words and separators: 'NVIDIA GeForce RTX 4090' -> 'rtx4090'."""
    folded = name.lower()
    for word in ("nvidia", "geforce", "tesla", "quadro "):
        folded = folded.replace(word, "")
    return re.sub(r"[\s_\-]+", "", folded)


@dataclass(frozen=True)
class Knowledge:
    builds: tuple[TorchBuild, ...]
    families: tuple[CudaFamily, ...]
    releases: tuple[CudaRelease, ...]
    gpus: tuple[GpuModel, ...]
    bases: tuple[KnownBase, ...]
    companions: tuple[Companion, ...]
    version: str
    directory: Path

    @cached_property
    def _gpu_index(self) -> dict[str, GpuModel]:
        index: dict[str, GpuModel] = {}
        for model in self.gpus:
            for name in (model.name, *model.aliases):
                index[normalise_gpu_name(name)] = model
        return index

    def gpu_named(self, name: str) -> GpuModel | None:
        return self._gpu_index.get(normalise_gpu_name(name))

    def gpu_reported(self, reported: str, capability: ComputeCapability) -> GpuModel | None:
        """The model of a GPU as NVML reports it ("NVIDIA GH200 480GB" is a GH200), trying ever
        shorter leading words; None where no name of that compute capability matches."""
        words = re.split(r"[\s\-]+", reported.strip())
        for end in range(len(words), 0, -1):
            model = self.gpu_named(" ".join(words[:end]))
            if model is not None and model.capability == capability:
                return model
        return None

    def gpu_names(self) -> list[str]:
        return [name for model in self.gpus for name in (model.name, *model.aliases)]

    def gpus_with(self, capability: ComputeCapability) -> list[str]:
        return [model.name for model in self.gpus if model.capability == capability]

    def base_named(self, reference: str) -> KnownBase | None:
        """The platform manifest digest of a base image reference, if the knowledge has it."""
        rows = [b for b in self.bases if b.reference == reference]
        return next((b for b in rows if b.kind == "linux/amd64 manifest"), None)

    def family(self, cuda: CudaVersion) -> CudaFamily | None:
        return next((f for f in self.families if f.major == cuda.major), None)

    def toolkit_driver(self, cuda: CudaVersion) -> DriverVersion | None:
        release = next((r for r in self.releases if r.cuda == cuda), None)
        return release.toolkit_driver if release else None

    def newest_full_cuda(self, driver: DriverVersion) -> CudaVersion | None:
        """The newest CUDA whose full toolkit driver is <= this driver."""
        fitting = [r.cuda for r in self.releases if r.toolkit_driver <= driver]
        return max(fitting) if fitting else None

    def builds_on(self, platform: str) -> list[TorchBuild]:
        """The builds whose wheels install on this image platform (AMD64, ARM64)."""
        return [build for build in self.builds if build.platform == platform]

    def releases_of_torch(self, platform: str) -> list[Version]:
        return sorted({build.torch for build in self.builds_on(platform)})

    def builds_for(self, torch: Version, platform: str) -> list[TorchBuild]:
        return [build for build in self.builds_on(platform) if build.torch == torch]

    def companion_packages(self) -> tuple[str, ...]:
        """The packages built per torch release, as the companion rows name them."""
        return tuple(sorted({row.package for row in self.companions}))

    def companions_of(self, package: str) -> list[Companion]:
        name = canonicalize_name(package)
        return [row for row in self.companions if row.package == name]

    def companion_for(self, package: str, torch: Version) -> Companion | None:
        """The release of `package` that pairs with this torch release (the PyPI row first)."""
        rows = [row for row in self.companions_of(package) if row.torch == Version(torch.public)]
        return min(rows, key=lambda row: row.index != PYPI, default=None)

    def built_for(self, package: str, version: Version) -> list[Version]:
        """The torch releases this release of `package` pairs with, oldest first."""
        rows = self.companions_of(package)
        return sorted({row.torch for row in rows if row.admits(version)})


def data_directory(override: Path | None = None) -> Path:
    """The directory to load: an explicit override, then $REPROBUILD_KNOWLEDGE, then the package."""
    if override is not None:
        return override
    from_env = os.environ.get(layout.KNOWLEDGE_VARIABLE)
    return Path(from_env) if from_env else PACKAGED_DATA


def load(directory: Path | None = None) -> Knowledge:
    """Read and validate the data files; raise KnowledgeError naming the bad row."""
    folder = data_directory(directory)
    raw = {name: content for name in DATA_FILES if (content := _read(folder / name)) is not None}
    documents = {
        name: _parse_json(folder / name, raw[name] if name in raw else LATER_FILES[name])
        for name in DATA_FILES
    }
    try:
        return Knowledge(
            builds=tuple(_torch_build(row) for row in documents["torch.json"]["builds"]),
            families=tuple(_family(row) for row in documents["cuda.json"]["families"]),
            releases=tuple(_release(row) for row in documents["cuda.json"]["releases"]),
            gpus=tuple(_gpu(row) for row in documents["gpus.json"]["gpus"]),
            bases=tuple(_base(row) for row in documents["bases.json"]["bases"]),
            companions=tuple(_companion(row) for row in documents["companions.json"]["companions"]),
            version=_version(raw, documents),
            directory=folder,
        )
    except (KeyError, TypeError, ValueError, InvalidVersion) as error:
        raise KnowledgeError(
            f"the knowledge base in {folder} is malformed ({type(error).__name__}: {error}). "
            "Restore the shipped files or regenerate them with `reprobuild knowledge refresh`."
        ) from None


def _read(path: Path) -> bytes | None:
    """The file's bytes; None for a missing file that a folder written before it may lack."""
    if path.name in LATER_FILES and not path.exists():
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise KnowledgeError(
            f"cannot read the knowledge file {path}: {error.strerror}. Point --knowledge "
            f"(or ${layout.KNOWLEDGE_VARIABLE}) at a directory holding "
            f"{', '.join(DATA_FILES)}, or reinstall reprobuild to restore the shipped data."
        ) from None


def _parse_json(path: Path, content: bytes) -> dict[str, Any]:
    try:
        document = json.loads(content)
    except json.JSONDecodeError as error:
        raise KnowledgeError(
            f"the knowledge file {path} is not valid JSON (line {error.lineno}: {error.msg}). "
            "Restore it from the package or regenerate it with `reprobuild knowledge refresh`."
        ) from None
    if not isinstance(document, dict):
        raise KnowledgeError(f"the knowledge file {path} must hold a JSON object.")
    return document


def _version(raw: dict[str, bytes], documents: dict[str, dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for name, content in raw.items():
        digest.update(name.encode() + b"\0" + content + b"\0")
    dates = [
        row["read"]
        for document in documents.values()
        for rows in document.values()
        if isinstance(rows, list)
        for row in rows
    ]
    return f"{max(dates)}+{digest.hexdigest()[:12]}"


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)


def _torch_build(row: dict[str, Any]) -> TorchBuild:
    archs = row["archs"]
    return TorchBuild(
        torch=Version(row["torch"]),
        variant=str(row["variant"]),
        # Rows written before the platform key were all linux/amd64 builds.
        platform=_platform(row.get("platform", AMD64)),
        wheel_version=str(row["wheel_version"]),
        index=str(row["index"]),
        pypi_default=bool(row["pypi_default"]),
        cuda=CudaVersion.parse(row["cuda"]) if row["cuda"] else None,
        cuda_runtime=_optional(row["cuda_runtime"]),
        cudnn=_optional(row["cudnn"]),
        nccl=_optional(row["nccl"]),
        archs=None if archs is None else tuple(Arch.parse(arch) for arch in archs),
        pythons=tuple(str(python) for python in row["pythons"]),
        source=str(row["source"]),
        archs_source=str(row["archs_source"]),
        read=str(row["read"]),
    )


def _platform(value: Any) -> str:
    if value not in PLATFORMS:
        raise ValueError(f"platform {value!r} is not one of {', '.join(PLATFORMS)}")
    return str(value)


def _companion(row: dict[str, Any]) -> Companion:
    pythons = row["pythons"]
    # A row written before platforms were read: torch's pin came from an x86_64 wheel. Claiming
    # it for aarch64 could ask for triton wheels that do not exist there (none before 3.5.0);
    # leaving it out only skips a check, as uv reads torch's own pins anyway.
    unread = [AMD64] if row["pinned_by"] == "torch" else None
    platforms = row.get("platforms", unread)
    if platforms is not None and not isinstance(platforms, list):
        raise TypeError(f"platforms is {platforms!r}, not a list")
    SpecifierSet(f"=={row['version']}")  # a version or a wildcard, else the row is malformed
    return Companion(
        package=str(canonicalize_name(row["package"])),
        version=str(row["version"]),
        torch=Version(row["torch"]),
        pinned_by=str(row["pinned_by"]),
        pythons=None if pythons is None else tuple(str(python) for python in pythons),
        index=str(row["index"]),
        source=str(row["source"]),
        read=str(row["read"]),
        platforms=None if platforms is None else tuple(_platform(name) for name in platforms),
    )


def _family(row: dict[str, Any]) -> CudaFamily:
    return CudaFamily(int(row["major"]), DriverVersion.parse(row["min_driver"]), row["source"])


def _release(row: dict[str, Any]) -> CudaRelease:
    return CudaRelease(
        CudaVersion.parse(row["cuda"]), DriverVersion.parse(row["toolkit_driver"]), row["source"]
    )


def _base(row: dict[str, Any]) -> KnownBase:
    return KnownBase(
        reference=str(row["reference"]),
        digest=str(row["digest"]),
        kind=str(row["kind"]),
        python=_optional(row["python"]),
        suite=str(row["suite"]),
        source=str(row["source"]),
    )


def _gpu(row: dict[str, Any]) -> GpuModel:
    if row.get("cpu") is not None and not (row.get("cpu_source") and row.get("superchip")):
        raise ValueError(f"GPU {row['name']} names its cpu without its cpu_source and superchip")
    return GpuModel(
        name=str(row["name"]),
        aliases=tuple(str(alias) for alias in row["aliases"]),
        capability=ComputeCapability.parse(row["capability"]),
        source=str(row["source"]),
        cpu=_cpu(row.get("cpu")),
        cpu_source=_optional(row.get("cpu_source")),
        superchip=_optional(row.get("superchip")),
    )


def _cpu(value: Any) -> str | None:
    if value not in (None, "arm64"):
        raise ValueError(f'GPU cpu {value!r} is not "arm64" or null')
    return None if value is None else str(value)
