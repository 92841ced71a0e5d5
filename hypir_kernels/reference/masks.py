"""Pure-torch reference of the Philox masks (``csrc/include/hypir_kernels/{philox,mask}.h``).

Philox4x32-10 is evaluated on int64 tensors holding uint32 values; the 32x32-bit products are
split into 16-bit limbs so nothing overflows int64. Bit-identical to the C++ and CUDA code.
"""
from __future__ import annotations

import torch

_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_U32 = 0xFFFFFFFF


def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves of the constant ``a`` times ``b`` (uint32 values in int64)."""
    b_lo, b_hi = b & 0xFFFF, b >> 16
    lo_part = a * b_lo  # < 2^48
    hi_part = a * b_hi  # < 2^48, weight 2^16
    mid = lo_part + ((hi_part & 0xFFFF) << 16)  # < 2^49
    lo = mid & _U32
    hi = (hi_part >> 16) + (mid >> 32)
    return hi & _U32, lo


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int) -> list[torch.Tensor]:
    """Philox4x32-10 of counters (int64 tensors with uint32 values) under key (k0, k1)."""
    for _ in range(10):
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + _W0) & _U32, (k1 + _W1) & _U32
    return [c0, c1, c2, c3]


def draws(seed: int, offsets: torch.Tensor, n: int) -> torch.Tensor:
    """The 32-bit draw of elements ``0..n-1`` of each sample: ``[B, n]`` int64 (uint32 values).
    Element e uses lane e % 4 of the Philox block with counter (e // 4, offset)."""
    groups = torch.arange((n + 3) // 4, dtype=torch.int64, device=offsets.device)
    c0 = (groups & _U32)[None, :].expand(offsets.shape[0], -1)
    c1 = (groups >> 32)[None, :].expand_as(c0)
    c2 = (offsets & _U32)[:, None].expand_as(c0)
    c3 = ((offsets >> 32) & _U32)[:, None].expand_as(c0)
    out = philox4x32_10(c0, c1, c2, c3, seed & _U32, (seed >> 32) & _U32)
    return torch.stack(out, dim=-1).reshape(offsets.shape[0], 4 * groups.shape[0])[:, :n]  # explicit: B may be 0


def keep_masks(shape, seed: int, offsets: torch.Tensor, threshold: int, further_threshold: int, shared: bool):
    """Boolean keep masks ``[B, 1 or C, H, W]`` for ``shape`` [B, C, H, W] (the further mask is
    None when ``further_threshold`` < 0)."""
    B, C, H, W = shape
    n = H * W if shared else C * H * W
    top24 = draws(seed, offsets, n) >> 8
    view = (B, 1 if shared else C, H, W)
    first = (top24 < threshold).reshape(view)
    further = (top24 < further_threshold).reshape(view) if further_threshold >= 0 else None
    return first, further


def apply_mask(x: torch.Tensor, seed: int, offsets: list[int], threshold: int, further_threshold: int, shared: bool):
    first, further = keep_masks(x.shape, seed, torch.tensor(offsets, dtype=torch.int64, device=x.device),
                                threshold, further_threshold, shared)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    out = torch.where(first, x, zero)
    return out, (torch.where(further, x, zero) if further is not None else x.new_empty(0))
