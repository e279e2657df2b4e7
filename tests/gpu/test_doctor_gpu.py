"""On a real NVIDIA GPU host: NVML reads driver, GPUs and capabilities (skipped elsewhere)."""

from __future__ import annotations

import pytest

from builder.engine import host

pytestmark = pytest.mark.gpu


def test_nvml_reads_driver_and_gpus() -> None:
    found = host.probe_nvidia(sm_counts=True)
    assert found.problem is None
    assert found.driver is not None and found.driver.parts[0] >= 450
    assert found.cuda_driver is not None and found.cuda_driver.major >= 11
    assert found.gpus, "NVML lists no GPU"
    for gpu in found.gpus:
        assert gpu.name and gpu.capability.major >= 3
        assert gpu.memory_bytes is not None and gpu.memory_bytes > 2**30
        assert gpu.sm_count is not None and gpu.sm_count > 0, "neither NVML nor CUDA gave SMs"
        assert gpu.uuid is not None and gpu.uuid.startswith("GPU-")
