"""Which Python distributions carry torch's CUDA components: one naming rule for the whole tool.

torch pins its CUDA runtime as `nvidia-cuda-runtime-cu12` (or, from 2.11, through the
`cuda-toolkit` meta-package), cuDNN as `nvidia-cudnn-cuXX` and NCCL as `nvidia-nccl-cuXX`.
"""

from __future__ import annotations

import re

_COMPONENTS = {
    "cuda_runtime": re.compile(r"^(cuda-toolkit|nvidia-cuda-runtime(-cu\d+)?)$"),
    "cudnn": re.compile(r"^nvidia-cudnn(-cu\d+)?$"),
    "nccl": re.compile(r"^nvidia-nccl(-cu\d+)?$"),
}


def component_of(distribution: str) -> str | None:
    """'cuda_runtime', 'cudnn', 'nccl' or None for a distribution name (any case, _ or -)."""
    name = distribution.lower().replace("_", "-")
    return next((key for key, pattern in _COMPONENTS.items() if pattern.match(name)), None)


def is_toolkit_meta(distribution: str) -> bool:
    """From torch 2.11 the runtime version is the `cuda-toolkit` pin, not nvidia-cuda-runtime's."""
    return distribution.lower() == "cuda-toolkit"
