"""Where the image must run: a minimum driver and the GPUs, from the spec or from this host."""

from __future__ import annotations

from dataclasses import dataclass

from builder.compat import DriverVersion
from builder.engine.host import NvidiaHost
from builder.errors import HostError
from builder.spec.model import GpuRequest, TargetSpec


@dataclass(frozen=True)
class Target:
    driver: DriverVersion | None
    gpus: tuple[GpuRequest, ...]
    origin: str  # "spec", "host" or "none"

    def describe(self) -> str:
        parts = [f"driver >= {self.driver}" if self.driver else "any driver"]
        parts.append(", ".join(gpu_label(gpu) for gpu in self.gpus) if self.gpus else "any GPU")
        return f"{'; '.join(parts)} (from {self.origin})"


def gpu_label(gpu: GpuRequest) -> str:
    sm = gpu.capability.sm
    if gpu.label.lower() in (sm, str(gpu.capability)):
        return sm
    return f"{gpu.label} ({sm})"


def from_spec(spec: TargetSpec) -> Target:
    origin = "spec" if spec.driver or spec.gpus else "none"
    return Target(spec.driver, spec.gpus, origin)


def from_host(host: NvidiaHost) -> Target:
    """The target of `target.host = true`: this machine's driver and every GPU it has."""
    if host.problem is not None or host.driver is None or not host.gpus:
        reason = host.problem or "NVML lists no GPU"
        raise HostError(
            f"the spec sets target.host = true, but this machine cannot be read: {reason} "
            "Run on the GPU machine, or replace it with target.driver and target.gpus."
        )
    gpus = tuple(GpuRequest(gpu.name, gpu.capability) for gpu in host.gpus)
    return Target(host.driver, tuple(dict.fromkeys(gpus)), "host")


def of_spec(spec: TargetSpec) -> Target:
    """The spec's target: this host's when it says `host = true`, else the one it names."""
    if spec.host:
        from builder.engine.host import probe_nvidia

        return from_host(probe_nvidia())
    return from_spec(spec)
