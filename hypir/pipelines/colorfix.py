"""Wavelet colour fix (as in the released HYPIR, after StableSR): keep the high frequencies of the
restored image and take the low frequencies (colour, tone) from the upscaled input."""
from __future__ import annotations

import torch
import torch.nn.functional as F

LEVELS = 5
_TAPS = ((1.0, 2.0, 1.0), (2.0, 4.0, 2.0), (1.0, 2.0, 1.0))


def _wavelet_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """The 3x3 binomial kernel dilated by ``radius`` (a-trous), replicate padding, per channel."""
    c = x.shape[1]
    kernel = (torch.tensor(_TAPS, dtype=x.dtype, device=x.device) / 16.0).expand(c, 1, 3, 3)
    return F.conv2d(F.pad(x, (radius,) * 4, mode="replicate"), kernel, groups=c, dilation=radius)


def wavelet_decompose(x: torch.Tensor, levels: int = LEVELS) -> tuple[torch.Tensor, torch.Tensor]:
    """``(high, low)`` with ``high + low == x``: ``low`` after ``levels`` a-trous blurs of radius
    1, 2, 4, ...; ``high`` the sum of the detail layers."""
    high = torch.zeros_like(x)
    for i in range(levels):
        low = _wavelet_blur(x, 2**i)
        high += x - low
        x = low
    return high, x


def wavelet_color_fix(content: torch.Tensor, style: torch.Tensor, levels: int = LEVELS) -> torch.Tensor:
    """High frequencies of ``content`` plus low frequencies of ``style``; both ``[B, C, H, W]``
    of the same shape (float32 recommended)."""
    for name, t in (("content", content), ("style", style)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or t.numel() == 0 or not t.is_floating_point():
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name}: expected a non-empty floating [B, C, H, W] tensor, got {shape}")
    if content.shape != style.shape:
        raise ValueError(f"style: expected the shape of content {tuple(content.shape)}, got {tuple(style.shape)}")
    high, _ = wavelet_decompose(content, levels)
    _, low = wavelet_decompose(style, levels)
    return high + low
