"""Checked before any kernel runs; each failure says what is wrong and what to do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from . import hook, key


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _arch_covers(archs: list[str], major: int, minor: int) -> str | None:
    cubins = [a for a in archs if a.startswith("sm_") and not a.endswith("a")]
    for arch in sorted(cubins, reverse=True):
        digits = arch[3:]
        if int(digits[:-1]) == major and int(digits[-1]) <= minor:
            return arch
    ptx = [
        a
        for a in archs
        if a.startswith("compute_") and int(a[8:-1]) * 10 + int(a[-1]) <= major * 10 + minor
    ]
    return ptx[-1] if ptx else None


def gpu_checks(min_driver: str | None) -> list[Check]:
    """min_driver: the lock's driver floor for the image's CUDA (expect.json), named on failure."""
    if not torch.cuda.is_available():
        return [Check("gpu", False, NO_GPU)]
    return [_driver_check(min_driver), _arch_check()]


NO_GPU = (
    "no GPU is visible to torch: run the container with the NVIDIA runtime "
    "(docker run --gpus all), or use --cpu for the CPU mode"
)


def _driver_check(min_driver: str | None) -> Check:
    needed = torch.version.cuda or "?"
    supported = hook.cuda_driver_version()
    needed_major = needed.split(".")[0]
    if supported is not None and int(supported.split(".")[0]) < int(needed_major):
        upgrade = f"to >= {min_driver}" if min_driver else f"to one that supports CUDA {needed}"
        detail = (
            f"the driver supports CUDA {supported}; this image needs CUDA {needed}: "
            f"upgrade the host driver {upgrade}"
        )
        return Check("driver", False, detail)
    return Check("driver", True, f"driver {hook.driver_version()} (CUDA {supported}) runs {needed}")


def _arch_check() -> Check:
    major, minor = torch.cuda.get_device_capability()
    archs = torch.cuda.get_arch_list()
    via = _arch_covers(archs, major, minor)
    name = torch.cuda.get_device_name()
    if via is None:
        detail = (
            f"{name} is sm_{major}{minor}; this torch has kernels for {' '.join(archs)} only: "
            "choose a torch build that covers it"
        )
        return Check("arch", False, detail)
    return Check("arch", True, f"{name} (sm_{major}{minor}) runs the {via} kernels")


def version_checks(expected: dict[str, Any]) -> list[Check]:
    """The torch, CUDA and cuDNN inside must be the ones the lock pinned."""
    found = {
        "torch": torch.__version__.split("+")[0],
        "cuda": torch.version.cuda,
        "cudnn": hook.cudnn_text(torch),
    }
    checks = []
    for name, want in expected.items():
        if want is None or name not in found:
            continue
        have = found[name]
        same = have is not None and (have == want or str(want).startswith(f"{have}."))
        checks.append(
            Check(name, same, f"{name} {have}" + ("" if same else f", the lock says {want}"))
        )
    return checks


def rank_checks(device: torch.device, ranks: int) -> list[Check]:
    """`--ranks N` (N >= 2): torch.distributed with the device's backend, and on GPUs one GPU
    per rank."""
    backend = key.backend(device)
    available = dist.is_available() and (
        dist.is_nccl_available() if backend == "nccl" else dist.is_gloo_available()
    )
    if not available:
        detail = (
            f"this torch has no torch.distributed {backend} backend, which --ranks needs: use a "
            "torch build with it, or leave --ranks out"
        )
        return [Check("ranks", False, detail)]
    if device.type != "cuda":
        return [Check("ranks", True, f"{ranks} ranks on the CPU over gloo")]
    if not torch.cuda.is_available():
        return []  # the gpu check says so
    return [gpu_count_check(ranks, torch.cuda.device_count())]


def gpu_count_check(ranks: int, visible: int) -> Check:
    """One GPU per rank: NCCL refuses two ranks on one device."""
    if visible < ranks:
        are = "is" if visible == 1 else "are"
        detail = (
            f"--ranks {ranks} needs {ranks} GPUs, one per rank, and {visible} {are} visible: "
            f"give the container more (--gpus all or --gpus {ranks}), or use --ranks {visible} "
            "or fewer"
        )
        return Check("ranks", False, detail)
    return Check("ranks", True, f"{ranks} ranks on {ranks} of {visible} GPUs over nccl")
