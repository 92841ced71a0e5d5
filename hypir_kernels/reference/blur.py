"""Reference separable filtering (Gaussian blur) by explicit index maps. The adjoint scatters
each output back through the same index map (index_add), so padded taps fold onto the pixels
they were read from: the exact adjoint by construction."""
from __future__ import annotations

import torch

PADDINGS = ("reflect", "replicate", "circular", "zeros")  # kernel codes 0..3


def pad_index(q: torch.Tensor, n: int, mode: int) -> torch.Tensor:
    """Index in [0, n) of padded coordinates ``q``, or -1 where the padding is zero."""
    inside = (q >= 0) & (q < n)
    if PADDINGS[mode] == "reflect":
        if n == 1:
            return torch.zeros_like(q)
        period = 2 * (n - 1)
        m = torch.remainder(q, period)
        return torch.where(m < n, m, period - m)
    if PADDINGS[mode] == "replicate":
        return q.clamp(0, n - 1)
    if PADDINGS[mode] == "circular":
        return torch.remainder(q, n)
    return torch.where(inside, q, torch.full_like(q, -1))


def correlate_last_axis(x: torch.Tensor, w: torch.Tensor, mode: int) -> torch.Tensor:
    """``y[b, ..., i] = sum_t w[b, t] x[b, ..., pad(i + t - r)]`` for x [B, C, H, n], w [B, k]."""
    n, k = x.shape[-1], w.shape[-1]
    q = torch.arange(n)[:, None] + torch.arange(k)[None, :] - k // 2
    idx = pad_index(q, n, mode).to(x.device)
    # where, not "* (idx >= 0)": a zero-padded tap must contribute 0 even next to an Inf/NaN pixel
    gathered = torch.where(idx >= 0, x[..., idx.clamp(min=0)], 0)  # [B, C, H, n, k]
    return (gathered * w[:, None, None, None, :].to(x.dtype)).sum(-1)


def correlate_last_axis_adjoint(y: torch.Tensor, w: torch.Tensor, mode: int) -> torch.Tensor:
    """Adjoint of :func:`correlate_last_axis`: ``xbar[..., pad(i + t - r)] += w[b, t] y[..., i]``."""
    n, k = y.shape[-1], w.shape[-1]
    q = torch.arange(n)[:, None] + torch.arange(k)[None, :] - k // 2
    idx = pad_index(q, n, mode).to(y.device)
    contrib = torch.where(idx >= 0, y[..., :, None] * w[:, None, None, None, :].to(y.dtype), 0)  # [B, C, H, n, k]
    out = torch.zeros_like(y)
    return out.index_add_(-1, idx.clamp(min=0).flatten(), contrib.flatten(-2))


def separable_filter(x: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor, pad: int, adjoint: bool) -> torch.Tensor:
    """Along W with ``wx`` then along H with ``wy`` (or the adjoint); accumulates in fp32/fp64."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    xa = x.to(acc)

    if not adjoint:
        z = correlate_last_axis(xa, wx, pad)
        return correlate_last_axis(z.transpose(-1, -2), wy, pad).transpose(-1, -2).to(x.dtype)
    z = correlate_last_axis_adjoint(xa.transpose(-1, -2), wy, pad).transpose(-1, -2)
    return correlate_last_axis_adjoint(z, wx, pad).to(x.dtype)
