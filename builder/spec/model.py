"""What a spec asks for, as typed records: the image, its target and its determinism policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet

from builder.compat import ComputeCapability, CudaVersion, DriverVersion
from builder.knowledge import AMD64


@dataclass(frozen=True)
class GpuRequest:
    """A GPU the image must run on, as the user wrote it and as a compute capability."""

    label: str
    capability: ComputeCapability


@dataclass(frozen=True)
class TargetSpec:
    driver: DriverVersion | None = None
    gpus: tuple[GpuRequest, ...] = ()
    host: bool = False


@dataclass(frozen=True)
class Determinism:
    seed: int = 0
    tf32: bool = False
    cublas_workspace_config: str = ":4096:8"


@dataclass(frozen=True)
class BootstrapBase:
    suite: str  # "debian:bookworm"
    snapshot: str  # RFC 3339 UTC, e.g. 2026-11-01T00:00:00Z
    mirror: str | None = None


@dataclass(frozen=True)
class Spec:
    name: str
    python: str
    torch: SpecifierSet
    torch_text: str
    torch_variant: str | None = None  # from a local tag: torch = "2.5.1+cu121"
    cuda: CudaVersion | None = None  # None: "auto"
    cpu_only: bool = False
    cuda_toolkit: str = "none"
    requirements: Path | None = None
    packages: tuple[str, ...] = ()
    system_packages: tuple[str, ...] = ()
    base: str | BootstrapBase | None = None
    target: TargetSpec = field(default_factory=TargetSpec)
    determinism: Determinism = field(default_factory=Determinism)
    exclude: tuple[str, ...] = ()  # gitignore-style: files kept out of the code layer
    include: tuple[str, ...] = ()  # and files let back in (builder/codeset.py)
    platforms: tuple[str, ...] = (AMD64,)  # image platforms, as written (or implied by a GPU)


@dataclass(frozen=True)
class LoadedSpec:
    spec: Spec
    path: Path
    notes: tuple[str, ...] = ()
    table: dict[str, Any] = field(default_factory=dict)  # as written, for the spec hash
