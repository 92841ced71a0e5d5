"""Reference row mixing for filter2d's row-spectral path (``torch.ops.hypir_kernels._mix_rows``):
explicit index maps along H, the adjoint by scattering through the same map (index_add)."""
from __future__ import annotations

import torch

from .blur import pad_index


def mix_rows(x: torch.Tensor, taps: torch.Tensor, mode: int, adjoint: bool) -> torch.Tensor:
    """x complex ``[B, C, H, F]``, taps ``[B, k, F]``.

    forward: ``out[b, c, y] = sum_t taps[b, t] * x[b, c, pad(y + t - k // 2)]``;
    adjoint: ``out[b, c, pad(y + t - k // 2)] += conj(taps[b, t]) * x[b, c, y]``.
    """
    H, k = x.shape[2], taps.shape[1]
    q = torch.arange(H)[:, None] + torch.arange(k)[None, :] - k // 2
    idx = pad_index(q, H, mode).to(x.device)  # [H, k]
    valid = (idx >= 0).to(x.real.dtype)[None, None, :, :, None]
    w = taps[:, None, None, :, :]  # [B, 1, 1, k, F]
    if not adjoint:
        return (x[:, :, idx.clamp(min=0)] * valid * w).sum(3)
    contrib = x[:, :, :, None, :] * valid * w.conj()  # [B, C, H, k, F]
    out = torch.zeros_like(x)
    return out.index_add_(2, idx.clamp(min=0).flatten(), contrib.flatten(2, 3))
