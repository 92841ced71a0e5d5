"""Argument checks for the public API: every message names the argument and what was expected.

Public: ``hypir`` (the model layer) validates its own arguments with these, so both packages
word their errors the same way (``"name: expected ..., got ..."``)."""
from __future__ import annotations

import math
import numbers
from typing import Iterable

import torch


INT64_MAX = (1 << 63) - 1


def check_int(name: str, value, minimum: int | None = None, maximum: int = INT64_MAX) -> int:
    """An int (bools and floats rejected, not truncated) in [minimum, maximum]; the default
    maximum keeps it a valid 64-bit size for torch and the kernels."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected >= {minimum}, got {value}")
    if value > maximum:
        raise ValueError(f"{name}: expected <= {maximum}, got {value}")
    return value


def check_probability(name: str, value) -> float:
    """A real number in [0, 1] (bools, NaN and non-numbers rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


def _finite_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def check_range(name: str, value, low: float = 0.0, high: float = math.inf, ints: bool = False) -> tuple:
    """A ``(lo, hi)`` pair of finite numbers (ints when ``ints``) with ``low <= lo <= hi <= high``."""
    ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(_finite_real(v) for v in value)
    if ok and ints:
        ok = all(isinstance(v, int) for v in value)
    if not ok or not low <= value[0] <= value[1] <= high:
        kind = "ints" if ints else "numbers"
        raise ValueError(f"{name}: expected two {kind} {low:g} <= low <= high <= {high:g}, got {value!r}")
    return tuple(value)


def check_weights(name: str, value, n: int) -> tuple:
    """``n`` non-negative finite weights, not all zero."""
    if not (isinstance(value, (tuple, list)) and len(value) == n and all(_finite_real(v) and v >= 0 for v in value)
            and sum(value) > 0):
        raise ValueError(f"{name}: expected {n} non-negative weights, not all zero, got {value!r}")
    return tuple(value)


def check_shape(name: str, shape, n: int) -> tuple[int, ...]:
    """A sequence of ``n`` non-negative ints (e.g. ``(B, C, H, W)``)."""
    if not isinstance(shape, (tuple, list, torch.Size)):
        raise ValueError(f"{name}: expected a tuple of {n} ints, got {type(shape).__name__} {shape!r}")
    if len(shape) != n:
        raise ValueError(f"{name}: expected {n} ints, got {tuple(shape)!r}")
    return tuple(check_int(f"{name}[{i}]", s, minimum=0) for i, s in enumerate(shape))


def check_seed(name: str, seed) -> int:
    """A Philox key: an int in [0, 2^64) (floats and bools rejected, not truncated). Returns it
    as the signed 64-bit value with the same bits, the form the library ops' ``int`` arguments
    carry (keys >= 2^63 would not fit otherwise); the kernels and the references read the bits."""
    if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed < 1 << 64:
        raise ValueError(f"{name}: expected an int in [0, 2^64), got {seed}")
    check_int(name, seed, minimum=0, maximum=(1 << 64) - 1)
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
