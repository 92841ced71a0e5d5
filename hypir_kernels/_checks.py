"""Argument checks for the public API: every message names the argument and what was expected."""
from __future__ import annotations

from typing import Iterable

import torch


def check_int(name: str, value, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected >= {minimum}, got {value}")
    return value


def check_seed(name: str, seed) -> int:
    """A Philox key: an int in [0, 2^64) (floats and bools rejected, not truncated). Returns it
    as the signed 64-bit value with the same bits, the form the library ops' ``int`` arguments
    carry (keys >= 2^63 would not fit otherwise); the kernels and the references read the bits."""
    check_int(name, seed, minimum=0)
    if seed >= 1 << 64:
        raise ValueError(f"{name}: expected an int in [0, 2^64), got {seed}")
    return seed - (1 << 64) if seed >= 1 << 63 else seed


def check_tensor(
    name: str,
    t,
    dims: int | None = None,
    dtypes: Iterable[torch.dtype] | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if dims is not None and t.dim() != dims:
        raise ValueError(f"{name}: expected {dims} dims, got shape {tuple(t.shape)}")
    if dtypes is not None:
        dtypes = tuple(dtypes)
        if t.dtype not in dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
            raise ValueError(f"{name}: expected dtype in ({names}), got {str(t.dtype).replace('torch.', '')}")
    if device is not None and t.device != torch.device(device):
        raise ValueError(f"{name}: expected a tensor on {device}, got {t.device}")
    return t
