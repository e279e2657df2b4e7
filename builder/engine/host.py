"""Probe this host: the NVIDIA driver and GPUs through NVML, and the Docker engine.

Every failure becomes a `problem` sentence in the returned record, never an exception, so
`reprobuild doctor` can report what it found and what it could not read. The heavy modules
(pynvml, docker) are imported only here, only when probing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from builder.compat import ComputeCapability, CudaVersion, DriverVersion
from builder.errors import EngineError

ENGINE_TIMEOUT_S = 5
NVML_LIBRARY = "libnvidia-ml.so.1"  # the name pynvml loads on Linux


@dataclass(frozen=True)
class HostGpu:
    index: int
    name: str
    capability: ComputeCapability
    memory_bytes: int | None
    sm_count: int | None
    uuid: str | None


@dataclass(frozen=True)
class NvidiaHost:
    driver: DriverVersion | None
    cuda_driver: CudaVersion | None
    gpus: tuple[HostGpu, ...]
    problem: str | None = None


@dataclass(frozen=True)
class EngineHost:
    address: str
    version: str | None
    api_version: str | None
    runtimes: tuple[str, ...]
    default_runtime: str | None
    problem: str | None = None

    @property
    def nvidia_runtime(self) -> bool:
        return "nvidia" in self.runtimes


_NVML_PROBLEMS = {
    "NVMLError_LibraryNotFound": (
        "no NVIDIA driver: the NVML library (libnvidia-ml.so.1) is not installed. Install the "
        "NVIDIA driver on a GPU machine; on a machine without a GPU this is expected."
    ),
    "NVMLError_DriverNotLoaded": (
        "the NVIDIA driver is installed but its kernel module is not loaded. Load it "
        "(`modprobe nvidia`) or reboot after the driver install."
    ),
    "NVMLError_NoPermission": (
        "NVML refused access to the GPU devices (permission denied on /dev/nvidia*). Run as a "
        "user with access to the GPUs."
    ),
}


def _nvml_problem(error: Exception) -> str:
    known = _NVML_PROBLEMS.get(type(error).__name__)
    return known or f"NVML failed: {type(error).__name__}: {error}."


def probe_nvidia(*, sm_counts: bool = False) -> NvidiaHost:
    """Read driver and GPUs through NVML (nvidia-ml-py's `pynvml` module). SM counts NVML does not
    give are read through libcuda, whose start costs about 0.2 s: ask for them only to show them."""
    if not _nvml_library_loads():
        return NvidiaHost(None, None, (), _NVML_PROBLEMS["NVMLError_LibraryNotFound"])
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        return NvidiaHost(None, None, (), _nvml_problem(error))
    try:
        driver = DriverVersion.parse(_text(pynvml.nvmlSystemGetDriverVersion()))
        cuda_driver = CudaVersion.from_driver_api(_cuda_driver_version(pynvml))
        count = pynvml.nvmlDeviceGetCount()
        gpus = tuple(_gpu(pynvml, index) for index in range(count))
        if sm_counts:
            gpus = _with_sm_counts(gpus)
        return NvidiaHost(driver, cuda_driver, gpus)
    except pynvml.NVMLError as error:
        return NvidiaHost(None, None, (), _nvml_problem(error))
    finally:
        pynvml.nvmlShutdown()


def _nvml_library_loads() -> bool:
    """Whether the driver's NVML library is there, asked before importing pynvml, whose import
    alone (25 ms) is most of a probe on a machine without a GPU."""
    import ctypes

    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        return False
    return True


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _cuda_driver_version(pynvml: Any) -> int:
    try:
        return int(pynvml.nvmlSystemGetCudaDriverVersion_v2())
    except (pynvml.NVMLError, AttributeError):
        return int(pynvml.nvmlSystemGetCudaDriverVersion())


def _gpu(pynvml: Any, index: int) -> HostGpu:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
    return HostGpu(
        index=index,
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        capability=ComputeCapability(int(major), int(minor)),
        memory_bytes=_optional(lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).total), pynvml),
        sm_count=_optional(lambda: _sm_count(pynvml, handle), pynvml),
        uuid=_optional(lambda: _text(pynvml.nvmlDeviceGetUUID(handle)), pynvml),
    )


def _sm_count(pynvml: Any, handle: Any) -> int:
    # NVML exposes the SM count through device attributes; older drivers support this for MIG
    # instances only and answer NotSupported for a whole GPU.
    return int(pynvml.nvmlDeviceGetAttributes_v2(handle).multiprocessorCount)


# cuDeviceGetAttribute's CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT (cuda.h).
_CU_MULTIPROCESSOR_COUNT = 16


def _with_sm_counts(gpus: tuple[HostGpu, ...]) -> tuple[HostGpu, ...]:
    """Fill the SM counts NVML did not give from the CUDA driver API, matched by GPU UUID
    (CUDA's device order need not be NVML's)."""
    if all(gpu.sm_count is not None for gpu in gpus):
        return gpus
    counts = _cuda_sm_counts()
    return tuple(
        gpu if gpu.sm_count is not None else replace(gpu, sm_count=counts.get(gpu.uuid or ""))
        for gpu in gpus
    )


def _cuda_sm_counts() -> dict[str, int]:
    """SM count per GPU UUID ("GPU-xxxxxxxx-...") through libcuda; {} where it cannot tell."""
    import ctypes

    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return {}
    count = ctypes.c_int()
    if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return {}
    found = {}
    for ordinal in range(count.value):
        device, sms, uuid = ctypes.c_int(), ctypes.c_int(), (ctypes.c_ubyte * 16)()
        failed = (
            libcuda.cuDeviceGet(ctypes.byref(device), ordinal)
            or libcuda.cuDeviceGetAttribute(ctypes.byref(sms), _CU_MULTIPROCESSOR_COUNT, device)
            or libcuda.cuDeviceGetUuid(uuid, device)
        )
        if not failed:
            found[nvml_uuid(bytes(uuid))] = sms.value
    return found


def nvml_uuid(raw: bytes) -> str:
    """CUDA's 16 UUID bytes as NVML writes them: GPU-8-4-4-4-12 hex digits."""
    digits = raw.hex()
    return f"GPU-{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _optional(read: Any, pynvml: Any) -> Any:
    try:
        return read()
    except (pynvml.NVMLError, AttributeError):
        return None


def probe_engine(base_url: str | None = None) -> EngineHost:
    """Ask the Docker engine for its version and runtimes through the docker SDK."""
    from docker.errors import DockerException

    from builder.engine.common import address, missing_engine_message
    from builder.engine.sdk import Engine, first_line

    target = base_url or address()
    try:
        engine = Engine.connect(target, timeout_s=ENGINE_TIMEOUT_S)
    except EngineError as error:
        return EngineHost(target, None, None, (), None, str(error))
    try:
        version, info = engine.describe()
    except (DockerException, OSError) as error:
        message = missing_engine_message(target, first_line(error))
        return EngineHost(target, None, None, (), None, message)
    finally:
        engine.close()
    return EngineHost(
        address=target,
        version=str(version.get("Version")),
        api_version=str(version.get("ApiVersion")),
        runtimes=tuple(sorted(info.get("Runtimes") or {})),
        default_runtime=info.get("DefaultRuntime"),
    )
