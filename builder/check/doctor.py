"""Judge this host: what the driver, GPUs and engine are, and whether a resolved image runs here.

Pure: it takes what `host.py` probed and, optionally, a Resolution, and returns checks. The
image verdict reuses the resolver's own `judge`, with this host as the target, so the doctor
and the resolver cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from builder.engine.host import EngineHost, NvidiaHost
from builder.knowledge import Knowledge
from builder.resolve import target
from builder.resolve.resolve import Request, Resolution, judge

OK, WARN, FAIL, INFO = "ok", "warn", "fail", "info"


@dataclass(frozen=True)
class Check:
    topic: str
    status: str
    detail: str


@dataclass(frozen=True)
class DoctorReport:
    nvidia: NvidiaHost
    engine: EngineHost
    checks: tuple[Check, ...]
    image: str | None  # the resolved image the verdict is about

    @property
    def runs_here(self) -> bool | None:
        if self.image is None:
            return None
        return not any(check.status == FAIL for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "driver": _text(self.nvidia.driver),
            "cuda_driver": _text(self.nvidia.cuda_driver),
            "gpus": [
                {
                    "index": gpu.index,
                    "name": gpu.name,
                    "capability": str(gpu.capability),
                    "memory_bytes": gpu.memory_bytes,
                    "sm_count": gpu.sm_count,
                    "uuid": gpu.uuid,
                }
                for gpu in self.nvidia.gpus
            ],
            "engine": {
                "address": self.engine.address,
                "version": self.engine.version,
                "api_version": self.engine.api_version,
                "runtimes": list(self.engine.runtimes),
                "default_runtime": self.engine.default_runtime,
            },
            "checks": [check.__dict__ for check in self.checks],
            "image": self.image,
            "runs_here": self.runs_here,
        }


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


def examine(
    nvidia: NvidiaHost,
    engine: EngineHost,
    resolution: Resolution | None,
    knowledge: Knowledge,
) -> DoctorReport:
    checks = [*_driver_checks(nvidia), *_engine_checks(engine)]
    image = None
    if resolution is not None:
        image = f"{resolution.name} (torch {resolution.build.label}, Python {resolution.python})"
        checks.extend(_image_checks(nvidia, resolution, knowledge))
    return DoctorReport(nvidia, engine, tuple(checks), image)


def _driver_checks(nvidia: NvidiaHost) -> list[Check]:
    if nvidia.problem is not None:
        return [Check("nvidia driver", WARN, nvidia.problem)]
    checks = [
        Check("nvidia driver", OK, f"driver {nvidia.driver}, CUDA driver API {nvidia.cuda_driver}")
    ]
    if not nvidia.gpus:
        checks.append(Check("gpus", WARN, "the driver answers but lists no GPU"))
    for gpu in nvidia.gpus:
        memory = f", {gpu.memory_bytes / 2**30:.0f} GiB" if gpu.memory_bytes else ""
        sms = f", {gpu.sm_count} SMs" if gpu.sm_count else ""
        checks.append(
            Check(f"gpu {gpu.index}", INFO, f"{gpu.name}, {gpu.capability.sm}{memory}{sms}")
        )
    return checks


def _engine_checks(engine: EngineHost) -> list[Check]:
    if engine.problem is not None:
        return [Check("docker engine", WARN, engine.problem)]
    checks = [
        Check("docker engine", OK, f"Docker Engine {engine.version} (API {engine.api_version})")
    ]
    if engine.nvidia_runtime:
        default = " (the default)" if engine.default_runtime == "nvidia" else ""
        checks.append(Check("nvidia runtime", OK, f"the nvidia runtime is registered{default}"))
    else:
        checks.append(
            Check(
                "nvidia runtime",
                WARN,
                "the engine has no nvidia runtime, so containers cannot see GPUs: install "
                "nvidia-container-toolkit and run `nvidia-ctk runtime configure --runtime=docker`, "
                "then restart the engine",
            )
        )
    return checks


def _image_checks(nvidia: NvidiaHost, resolution: Resolution, knowledge: Knowledge) -> list[Check]:
    build = resolution.build
    if build.cuda is None:
        return [Check("image", OK, "CPU-only image: it needs no GPU or driver")]
    if nvidia.problem is not None or nvidia.driver is None:
        return [Check("image", FAIL, f"a CUDA {build.cuda} image needs an NVIDIA driver here")]
    if not nvidia.gpus:
        return [
            Check("image", FAIL, f"the driver lists no GPU; a CUDA {build.cuda} image needs one")
        ]
    # Python belongs to the image, not the host: judge only driver and kernels.
    verdict = judge(build, Request(None, None, None, target.from_host(nvidia)), knowledge)
    if verdict.rejections:
        return [Check("image", FAIL, text) for text in verdict.rejections]
    checks = [
        Check(
            "image",
            OK,
            f"driver {nvidia.driver} runs CUDA {build.cuda} (needs >= {resolution.min_driver})",
        )
    ]
    checks.extend(
        Check("image", OK, f"{c.gpu.label} ({c.gpu.capability.sm}) runs the {c.via} kernels")
        for c in verdict.coverage
    )
    checks.extend(Check("image", INFO, note) for note in verdict.notes)
    return checks
