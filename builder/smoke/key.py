"""The fingerprint key: everything the bits depend on. Identical bits are promised only for an
identical key (same GPU model, SM count, driver, library versions, flags and variables). The
readings are the image's runtime hook's (builder/smoke/hook.py), which puts the same ones in a
run's key and must stay one standard-library file."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from . import hook, settings


def build(device: torch.device) -> dict[str, Any]:
    key: dict[str, Any] = {
        "device": device.type,
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", None),
        "cuda": torch.version.cuda,
        "cudnn": hook.cudnn_text(torch),
        "cublas_wheel": hook.wheel_version(hook.CUBLAS_WHEELS),
        "machine": platform.machine(),
        "settings": settings.record(),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        key.update(
            gpu=properties.name,
            capability=f"{properties.major}.{properties.minor}",
            sm_count=properties.multi_processor_count,
            driver=hook.driver_version(),
            cuda_driver=hook.cuda_driver_version(),
        )
    else:
        key.update(cpu=hook.cpu_model(), cpu_capability=torch.backends.cpu.get_cpu_capability())
    return key


# NCCL's choices that set the order in which a sum meets its terms (algorithm, protocol,
# channels, chunking, transports): another value may give other bits.
NCCL_VARIABLES = (
    "NCCL_ALGO",
    "NCCL_PROTO",
    "NCCL_MIN_NCHANNELS",
    "NCCL_MAX_NCHANNELS",
    "NCCL_NTHREADS",
    "NCCL_BUFFSIZE",
    "NCCL_P2P_DISABLE",
    "NCCL_SHM_DISABLE",
    "NCCL_NVLS_ENABLE",
)


def backend(device: torch.device) -> str:
    """torch.distributed's backend for the device: NCCL on GPUs, gloo on the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def nccl_version() -> str | None:
    """The NCCL torch runs (a tuple in torch 2, a number in older releases); None without one."""
    try:
        version = torch.cuda.nccl.version()
    except (AttributeError, RuntimeError):  # a torch built without NCCL
        return None
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def distributed(device: torch.device, world_size: int) -> dict[str, Any]:
    """The group's part of the key: gloo is part of torch (its version is torch's); with NCCL,
    the GPUs of the ranks and the variables that steer its reductions count too."""
    chosen = backend(device)
    if chosen == "gloo":
        return {"world_size": world_size, "backend": chosen, "backend_version": torch.__version__}
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {
        "world_size": world_size,
        "backend": chosen,
        "backend_version": nccl_version(),
        "gpus": [torch.cuda.get_device_name(index) for index in range(min(world_size, visible))],
        "env": {name: os.environ.get(name) for name in NCCL_VARIABLES},
    }


def unseen(device: torch.device) -> dict[str, Any]:
    """The part of the key known without the device (GPU mode where no GPU is visible)."""
    return {"device": device.type, "torch": torch.__version__, "cuda": torch.version.cuda}
