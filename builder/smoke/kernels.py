"""The kernel suite: witnesses of nondeterminism and the workhorses of training.

Witnesses vary run to run on a modern GPU without deterministic settings (measured: H100, torch
2.11, 6 of 6 runs distinct) and give one result under them. Workhorses are what training spends
its time in. Every input is generated on the CPU from a fixed seed, then moved to the device, so
inputs are identical in every process. Standard library and torch only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Kernel:
    name: str
    witness: bool  # varies without deterministic settings on a GPU
    gpu_only: bool
    run: Callable[[torch.device, int], list[torch.Tensor]]  # (device, scale) -> outputs


def _cpu_randn(seed: int, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator).to(dtype)


def _cpu_randint(seed: int, high: int, *shape: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, shape, generator=generator)


def _on(device: torch.device, tensor: torch.Tensor, grad: bool = False) -> torch.Tensor:
    moved = tensor.to(device)
    return moved.requires_grad_(True) if grad else moved


def index_add(device: torch.device, scale: int) -> list[torch.Tensor]:
    n = 1 << (14 + scale)
    source = _on(device, _cpu_randn(1, n))
    index = _on(device, _cpu_randint(2, 64, n))
    return [torch.zeros(64, device=device).index_add_(0, index, source)]


def scatter_add(device: torch.device, scale: int) -> list[torch.Tensor]:
    n = 1 << (14 + scale)
    source = _on(device, _cpu_randn(3, n))
    index = _on(device, _cpu_randint(4, 64, n))
    return [torch.zeros(64, device=device).scatter_add_(0, index, source)]


def scatter_reduce_sum(device: torch.device, scale: int) -> list[torch.Tensor]:
    n = 1 << (14 + scale)
    source = _on(device, _cpu_randn(5, n))
    index = _on(device, _cpu_randint(6, 64, n))
    return [torch.zeros(64, device=device).scatter_reduce(0, index, source, reduce="sum")]


def embedding_backward(device: torch.device, scale: int) -> list[torch.Tensor]:
    weight = _on(device, _cpu_randn(7, 64, 128), grad=True)
    index = _on(device, _cpu_randint(8, 64, 1 << (8 + scale)))
    F.embedding(index, weight).sum().backward()
    assert weight.grad is not None
    return [weight.grad]


def gather_backward(device: torch.device, scale: int) -> list[torch.Tensor]:
    source = _on(device, _cpu_randn(9, 64, 256), grad=True)
    index = _on(device, _cpu_randint(10, 64, 1 << (8 + scale), 256))
    torch.gather(source, 0, index).sum().backward()
    assert source.grad is not None
    return [source.grad]


def cumsum_float32(device: torch.device, scale: int) -> list[torch.Tensor]:
    return [torch.cumsum(_on(device, _cpu_randn(11, 1 << (18 + scale))), dim=0)]


def bilinear_backward(device: torch.device, scale: int) -> list[torch.Tensor]:
    side = 16 << min(scale, 4)
    image = _on(device, _cpu_randn(12, 4, 8, side, side), grad=True)
    F.interpolate(image, scale_factor=2.0, mode="bilinear", align_corners=False).pow(
        2
    ).sum().backward()
    assert image.grad is not None
    return [image.grad]


def replication_pad_backward(device: torch.device, scale: int) -> list[torch.Tensor]:
    side = 16 << min(scale, 4)
    image = _on(device, _cpu_randn(13, 4, 8, side, side), grad=True)
    F.pad(image, (3, 3, 3, 3), mode="replicate").pow(2).sum().backward()
    assert image.grad is not None
    return [image.grad]


def _attention_backward(device: torch.device, scale: int, backend: str) -> list[torch.Tensor]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    shape = (4, 8, 128 << min(scale, 3), 64)
    q, k, v = (
        _on(device, _cpu_randn(14 + i, *shape, dtype=torch.bfloat16), grad=True) for i in range(3)
    )
    with sdpa_kernel(getattr(SDPBackend, backend)):
        F.scaled_dot_product_attention(q, k, v, is_causal=True).float().pow(2).sum().backward()
    return [tensor.grad for tensor in (q, k, v) if tensor.grad is not None]


def flash_attention_backward(device: torch.device, scale: int) -> list[torch.Tensor]:
    return _attention_backward(device, scale, "FLASH_ATTENTION")


def efficient_attention_backward(device: torch.device, scale: int) -> list[torch.Tensor]:
    return _attention_backward(device, scale, "EFFICIENT_ATTENTION")


def matmul_fp32(device: torch.device, scale: int) -> list[torch.Tensor]:
    side = 64 << min(scale, 6)
    return [_on(device, _cpu_randn(20, side, side)) @ _on(device, _cpu_randn(21, side, side))]


def matmul_bf16(device: torch.device, scale: int) -> list[torch.Tensor]:
    side = 64 << min(scale, 6)
    a = _on(device, _cpu_randn(22, side, side, dtype=torch.bfloat16))
    return [a @ _on(device, _cpu_randn(23, side, side, dtype=torch.bfloat16))]


def conv2d(device: torch.device, scale: int) -> list[torch.Tensor]:
    side = 16 << min(scale, 3)
    image = _on(device, _cpu_randn(24, 8, 16, side, side), grad=True)
    weight = _on(device, _cpu_randn(25, 32, 16, 3, 3), grad=True)
    output = F.conv2d(image, weight, padding=1)
    output.pow(2).sum().backward()
    assert image.grad is not None and weight.grad is not None
    return [output, image.grad, weight.grad]


def layer_norm(device: torch.device, scale: int) -> list[torch.Tensor]:
    x = _on(device, _cpu_randn(26, 64 << min(scale, 4), 512), grad=True)
    output = F.layer_norm(x, (512,))
    output.pow(3).sum().backward()
    assert x.grad is not None
    return [output, x.grad]


def batch_norm(device: torch.device, scale: int) -> list[torch.Tensor]:
    x = _on(device, _cpu_randn(27, 32, 16, 8 << min(scale, 3), 8 << min(scale, 3)), grad=True)
    output = F.batch_norm(x, None, None, training=True)
    output.pow(3).sum().backward()
    assert x.grad is not None
    return [output, x.grad]


SUITE: tuple[Kernel, ...] = (
    Kernel("index_add_", True, False, index_add),
    Kernel("scatter_add_", True, False, scatter_add),
    Kernel("scatter_reduce_sum", True, False, scatter_reduce_sum),
    Kernel("embedding_backward", True, False, embedding_backward),
    Kernel("gather_backward", True, False, gather_backward),
    Kernel("cumsum_float32", True, False, cumsum_float32),
    Kernel("interpolate_bilinear_backward", True, False, bilinear_backward),
    Kernel("replication_pad2d_backward", True, False, replication_pad_backward),
    Kernel("sdpa_flash_backward", True, True, flash_attention_backward),
    Kernel("sdpa_efficient_backward", True, True, efficient_attention_backward),
    Kernel("matmul_fp32", False, False, matmul_fp32),
    Kernel("matmul_bf16", False, False, matmul_bf16),
    Kernel("conv2d_fwd_bwd", False, False, conv2d),
    Kernel("layer_norm_fwd_bwd", False, False, layer_norm),
    Kernel("batch_norm_fwd_bwd", False, False, batch_norm),
)


def for_device(device: torch.device) -> tuple[Kernel, ...]:
    return tuple(k for k in SUITE if device.type == "cuda" or not k.gpu_only)
