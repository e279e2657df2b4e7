"""Judge this host: what the driver, GPUs and engine are, and whether a resolved image runs here.

Pure: it takes what `host.py` probed and, optionally, a Resolution, and returns checks. The
driver verdict is the NVIDIA container runtime's own: the image's NVIDIA_REQUIRE_CUDA, written
by the function the plan uses, evaluated by the runtime's rules (render/requirement.py), which
tests hold equal to the resolver's driver floor. The GPU verdict reuses the resolver's `judge`,
with this host as the target.
"""

from __future__ import annotations

import platform as host_cpu
from dataclasses import dataclass
from typing import Any

from builder.compat import CudaVersion, DriverVersion
from builder.engine.host import EngineHost, NvidiaHost
from builder.knowledge import Knowledge, machine_platform
from builder.render import requirement
from builder.resolve import target
from builder.resolve.resolve import Request, Resolution, judge
from builder.resolve.target import Target

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
    machine: str | None = None,
) -> DoctorReport:
    """The checks of this host and, with a resolution, of its image here; `machine` is
    platform.machine() unless given."""
    checks = [*_driver_checks(nvidia), *_engine_checks(engine)]
    image = None
    if resolution is not None:
        build = resolution.build
        image = (
            f"{resolution.name} (torch {build.label}, Python {resolution.python}, "
            f"{resolution.platform})"
        )
        checks.extend(_platform_checks(resolution.platform, machine or host_cpu.machine()))
        checks.extend(_image_checks(nvidia, resolution, knowledge))
    return DoctorReport(nvidia, engine, tuple(checks), image)


def _platform_checks(image: str, machine: str) -> list[Check]:
    """Whether this machine's CPU runs the image's platform; nothing said for a CPU unknown."""
    here = machine_platform(machine)
    if here is None:
        return []
    if here == image:
        return [Check("platform", OK, f"the image is {image}, as this machine ({machine}) runs")]
    return [
        Check(
            "platform",
            FAIL,
            f"the image is {image} and this machine's CPU ({machine}) runs {here} images: run it "
            f'on a {image} machine, or add "{here}" to the spec\'s platforms for an image this '
            "machine runs",
        )
    ]


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
    if resolution.min_driver is None:
        return [
            Check("image", FAIL, f"the knowledge base has no driver floor for CUDA {build.cuda}")
        ]
    runtime = _runtime_check(nvidia, nvidia.driver, build.cuda, resolution.min_driver, knowledge)
    # Python belongs to the image, not the host: judge only driver and kernels. The driver is
    # the runtime check's to judge; what the resolver says of it alone is left out.
    host = target.from_host(nvidia)
    verdict = judge(build, Request(None, None, None, host), knowledge)
    floor = judge(build, Request(None, None, None, Target(host.driver, (), host.origin)), knowledge)
    rejections = [text for text in verdict.rejections if text not in floor.rejections]
    if runtime.status == FAIL or rejections:
        return [runtime, *(Check("image", FAIL, text) for text in rejections)]
    checks = [runtime]
    checks.extend(
        Check("image", OK, f"{c.gpu.label} ({c.gpu.capability.sm}) runs the {c.via} kernels")
        for c in verdict.coverage
    )
    checks.extend(Check("image", INFO, note) for note in verdict.notes)
    return checks


def _runtime_check(
    nvidia: NvidiaHost,
    driver: DriverVersion,
    cuda: CudaVersion,
    min_driver: DriverVersion,
    knowledge: Knowledge,
) -> Check:
    """What the NVIDIA container runtime decides before it starts the image on this host."""
    value = requirement.require_cuda(cuda, min_driver)
    reported = nvidia.cuda_driver or requirement.driver_cuda(driver, knowledge)
    devices = [requirement.Device(str(gpu.capability), None) for gpu in nvidia.gpus]
    verdict = requirement.evaluate(
        requirement.parse(value), requirement.Driver(driver, reported), devices
    )
    host = f"driver {driver}" + (f" (CUDA {reported})" if reported else "")
    checked = f"the NVIDIA container runtime checks the image's NVIDIA_REQUIRE_CUDA={value}"
    if verdict.satisfied:
        return Check("image", OK, f"{host} runs CUDA {cuda}: {checked} and starts it")
    unmet = ", ".join(str(condition) for condition in verdict.unmet)
    return Check(
        "image",
        FAIL,
        f"{host} fails {unmet}: {checked} and refuses to start it. CUDA {cuda} needs a driver "
        f">= {min_driver}: update the driver.",
    )
