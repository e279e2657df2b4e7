"""Deterministic settings, all applied before the first CUDA call, and their record."""

from __future__ import annotations

import os
import random

import torch

DEFAULT_CUBLAS = ":4096:8"


def tf32_allowed() -> bool:
    """The image's TF32 policy (REPROBUILD_TF32=1 allows it); off by default."""
    return os.environ.get("REPROBUILD_TF32", "0") == "1"


def apply(deterministic: bool, seed: int) -> None:
    """Deterministic mode, or the default (nondeterministic) mode the canary runs in."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", DEFAULT_CUBLAS)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False
    allow = tf32_allowed()
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy
    except ImportError:
        pass
    else:
        numpy.random.seed(seed)


def record() -> dict[str, object]:
    """What the bits depend on among settings and environment variables."""
    return {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "num_threads": torch.get_num_threads(),
        "env": {
            name: os.environ.get(name)
            for name in (
                "CUBLAS_WORKSPACE_CONFIG",
                "NVIDIA_TF32_OVERRIDE",
                "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
                "PYTHONHASHSEED",
                "REPROBUILD_TF32",
            )
        },
    }
