"""The fingerprint key: everything the bits depend on. Identical bits are promised only for an
identical key (same GPU model, SM count, driver, library versions, flags and variables)."""

from __future__ import annotations

import ctypes
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from . import settings

_CUBLAS_WHEELS = ("nvidia-cublas-cu12", "nvidia-cublas-cu11", "nvidia-cublas", "nvidia-cublas-cu13")


def driver_version() -> str | None:
    """The NVIDIA kernel module version, read from /proc (no NVML needed inside images)."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    return match.group(1) if match else None


def cuda_driver_version() -> str | None:
    """What libcuda supports (cuDriverGetVersion), e.g. 13.0; None without a driver."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    value = ctypes.c_int()
    if libcuda.cuDriverGetVersion(ctypes.byref(value)) != 0:
        return None
    return f"{value.value // 1000}.{(value.value % 1000) // 10}"


def _wheel_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def cudnn_text() -> str | None:
    """torch's cuDNN as major.minor.patch (90100 -> 9.1.0)."""
    version = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if not version:
        return None
    major, rest = divmod(int(version), 10000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build(device: torch.device) -> dict[str, Any]:
    key: dict[str, Any] = {
        "device": device.type,
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", None),
        "cuda": torch.version.cuda,
        "cudnn": cudnn_text(),
        "cublas_wheel": _wheel_version(_CUBLAS_WHEELS),
        "machine": platform.machine(),
        "settings": settings.record(),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        key.update(
            gpu=properties.name,
            capability=f"{properties.major}.{properties.minor}",
            sm_count=properties.multi_processor_count,
            driver=driver_version(),
            cuda_driver=cuda_driver_version(),
        )
    else:
        key.update(cpu=_cpu_model(), cpu_capability=torch.backends.cpu.get_cpu_capability())
    return key


def unseen(device: torch.device) -> dict[str, Any]:
    """The part of the key known without the device (GPU mode where no GPU is visible)."""
    return {"device": device.type, "torch": torch.__version__, "cuda": torch.version.cuda}
