"""The fingerprint key: everything the bits depend on. Identical bits are promised only for an
identical key (same GPU model, SM count, driver, library versions, flags and variables). The
readings are the image's runtime hook's (builder/smoke/hook.py), which puts the same ones in a
run's key and must stay one standard-library file."""

from __future__ import annotations

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


def unseen(device: torch.device) -> dict[str, Any]:
    """The part of the key known without the device (GPU mode where no GPU is visible)."""
    return {"device": device.type, "torch": torch.__version__, "cuda": torch.version.cuda}
