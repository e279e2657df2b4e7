"""sha256 of tensor bytes, with the standard library only (no NumPy)."""

from __future__ import annotations

import ctypes
import hashlib

import torch


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    host = tensor.detach().to("cpu").contiguous()
    return ctypes.string_at(host.data_ptr(), host.numel() * host.element_size())


def fingerprint(tensors: list[torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()
