"""CUDA binary and driver compatibility rules, as pure functions over small value types.

Rules (sources in the knowledge base and docs/knowledge.md):
- A cubin for sm_XY runs on a GPU of compute capability X.Z when Z >= Y (same major).
  Arch-specific cubins (sm_90a) run only on exactly that capability.
- Otherwise PTX compute_XY with XY <= the device's capability can be JIT-compiled by the
  driver, which needs a driver at least as new as the toolkit that produced the PTX.
- A CUDA X.Y runtime runs on any driver >= the minor-version-compatibility floor of family X.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_CC_DOTTED = re.compile(r"^(\d{1,2})\.(\d)$")
_ARCH = re.compile(r"^(sm|compute)_(\d{1,2})(\d)([af]?)$")
_DRIVER = re.compile(r"^\d{2,4}(\.\d{1,3}){1,2}$")
_CUDA = re.compile(r"^(\d{1,2})\.(\d{1,2})$")


@total_ordering
@dataclass(frozen=True)
class ComputeCapability:
    """A GPU compute capability such as 8.6."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> ComputeCapability:
        """Read "8.6", "sm_86" or "compute_86"; raise ValueError otherwise."""
        cleaned = text.strip().lower()
        dotted = _CC_DOTTED.match(cleaned)
        if dotted:
            return cls(int(dotted.group(1)), int(dotted.group(2)))
        arch = _ARCH.match(cleaned)
        if arch and not arch.group(4):
            return cls(int(arch.group(2)), int(arch.group(3)))
        raise ValueError(f"not a compute capability: {text!r}")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ComputeCapability):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def sm(self) -> str:
        return f"sm_{self.major}{self.minor}"


@dataclass(frozen=True)
class Arch:
    """One entry of a torch arch list: a cubin (sm_86, sm_90a) or PTX (compute_120)."""

    kind: str  # "sm" or "compute"
    capability: ComputeCapability
    suffix: str  # "" or "a" / "f" for arch- or family-specific cubins

    @classmethod
    def parse(cls, text: str) -> Arch:
        match = _ARCH.match(text.strip())
        if not match:
            raise ValueError(f"not an arch name (sm_XY or compute_XY): {text!r}")
        capability = ComputeCapability(int(match.group(2)), int(match.group(3)))
        return cls(match.group(1), capability, match.group(4))

    def __str__(self) -> str:
        return f"{self.kind}_{self.capability.major}{self.capability.minor}{self.suffix}"


def cubin_runs_on(cubin: Arch, device: ComputeCapability) -> bool:
    """Whether a cubin executes on the device without JIT."""
    if cubin.kind != "sm":
        return False
    if cubin.suffix == "a":
        return cubin.capability == device
    return cubin.capability.major == device.major and cubin.capability.minor <= device.minor


def ptx_jits_on(ptx: Arch, device: ComputeCapability) -> bool:
    """Whether the driver can JIT this PTX for the device (driver age checked separately)."""
    return ptx.kind == "compute" and ptx.capability <= device


@dataclass(frozen=True)
class Coverage:
    """How a build reaches one device: through a cubin, through PTX JIT, or not at all."""

    device: ComputeCapability
    via: Arch | None

    @property
    def covered(self) -> bool:
        return self.via is not None

    @property
    def needs_jit(self) -> bool:
        return self.via is not None and self.via.kind == "compute"


def coverage(archs: tuple[Arch, ...], device: ComputeCapability) -> Coverage:
    """Pick the best way a build's arch list reaches a device: the closest cubin, else PTX."""
    cubins = [arch for arch in archs if cubin_runs_on(arch, device)]
    if cubins:
        return Coverage(device, max(cubins, key=lambda arch: arch.capability))
    ptx = [arch for arch in archs if ptx_jits_on(arch, device)]
    if ptx:
        return Coverage(device, max(ptx, key=lambda arch: arch.capability))
    return Coverage(device, None)


@total_ordering
@dataclass(frozen=True)
class DriverVersion:
    """An NVIDIA Linux driver version such as 535.104.05, compared numerically."""

    parts: tuple[int, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> DriverVersion:
        cleaned = text.strip()
        if not _DRIVER.match(cleaned):
            raise ValueError(f"not a driver version (like 535.104.05): {text!r}")
        return cls(tuple(int(part) for part in cleaned.split(".")), cleaned)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, DriverVersion):
            return NotImplemented
        return self.parts < other.parts

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DriverVersion):
            return NotImplemented
        return self.parts == other.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def __str__(self) -> str:
        return self.text


@total_ordering
@dataclass(frozen=True)
class CudaVersion:
    """A CUDA major.minor such as 12.4."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> CudaVersion:
        match = _CUDA.match(text.strip())
        if not match:
            raise ValueError(f"not a CUDA version (like 12.4): {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def from_driver_api(cls, value: int) -> CudaVersion:
        """Decode NVML's/cuDriverGetVersion's integer, e.g. 12040 -> 12.4."""
        return cls(value // 1000, (value % 1000) // 10)

    @classmethod
    def from_variant(cls, variant: str) -> CudaVersion:
        """Decode a wheel variant tag: cu124 -> 12.4, cu118 -> 11.8, cu130 -> 13.0."""
        digits = variant.removeprefix("cu")
        if not digits.isdigit() or len(digits) < 3:
            raise ValueError(f"not a CUDA variant tag (like cu124): {variant!r}")
        return cls(int(digits[:-1]), int(digits[-1]))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, CudaVersion):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def variant(self) -> str:
        return f"cu{self.major}{self.minor}"
