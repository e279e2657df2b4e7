"""Deterministic settings, all applied before the first CUDA call, and their record."""

from __future__ import annotations

import os
import random

import torch

from . import hook


def tf32_allowed() -> bool:
    """The image's TF32 policy (REPROBUILD_TF32=1 allows it); off by default."""
    return os.environ.get("REPROBUILD_TF32", "0") == "1"


def apply(deterministic: bool, seed: int) -> None:
    """Deterministic mode (the image hook's own settings), or the default (nondeterministic)
    mode the canary runs in."""
    tf32 = tf32_allowed()
    if deterministic:
        hook.deterministic_torch(torch, seed=seed, tf32=tf32, warn_only=False)
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        torch.manual_seed(seed)
    random.seed(seed)
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
