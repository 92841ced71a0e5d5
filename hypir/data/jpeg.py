"""Batched JPEG compression in torch (per-sample quality), the JPEG stage of the Real-ESRGAN
degradation: baseline JPEG's lossy steps, done on the training device without leaving torch.

Per sample: RGB -> YCbCr (JFIF), 4:2:0 chroma subsampling (2x2 mean), 8x8 block DCT-II
(orthonormal, as a matrix product), quantisation with the IJG standard tables scaled by the
quality (libjpeg's formula: ``5000 / q`` below 50, ``200 - 2 q`` from 50), rounding, the inverse
steps, libjpeg's "fancy" (bilinear) chroma upsampling, clamping to [0, 1]. Images are padded (replicate) to a
multiple of 16 and cropped back. What differs from libjpeg (entropy coding is lossless and left
out): its integer DCT and rounding, and its chroma downsampling filter, so the result is close
to, not equal to, PIL's (``tests/hypir/test_data_jpeg.py`` measures the gap). Rounding is hard
(no gradient through it); Real-ESRGAN's DiffJPEG uses a cubic approximation for training through
JPEG, which the degradation does not need.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hypir_kernels._checks import check_tensor

_LUMA = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
]
_CHROMA = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32


def quant_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IJG tables ``([B, 8, 8] luma, [B, 8, 8] chroma)`` for integer qualities in [1, 100]."""
    q = quality.to(torch.float64)
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)[:, None, None]

    def table(base):
        t = torch.tensor(base, dtype=torch.float64, device=quality.device).reshape(1, 8, 8)
        return torch.clamp(torch.floor((t * scale + 50.0) / 100.0), 1.0, 255.0)

    return table(_LUMA), table(_CHROMA)


def _dct_matrix(dtype, device) -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(dtype=dtype, device=device)


def _blocks_roundtrip(plane: torch.Tensor, table: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` (H, W multiples of 8, values 0..255) through DCT -> quantise -> inverse."""
    B, H, W = plane.shape
    blk = (plane - 128.0).reshape(B, H // 8, 8, W // 8, 8).transpose(2, 3)  # [B, h, w, 8, 8]
    coef = d @ blk @ d.T
    t = table[:, None, None]
    coef = torch.round(coef / t) * t
    return (d.T @ coef @ d + 128.0).transpose(2, 3).reshape(B, H, W)


def jpeg(x: torch.Tensor, quality) -> torch.Tensor:
    """``[B, 3, H, W]`` RGB in [0, 1] compressed at ``quality`` (an int, or ``[B]`` ints in [1, 100])."""
    check_tensor("x", x, dims=4, dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16))
    B, C, H, W = x.shape
    if C != 3:
        raise ValueError(f"x: expected 3 (RGB) channels, got shape {tuple(x.shape)}")
    if not isinstance(quality, (int, torch.Tensor)) or isinstance(quality, bool):
        raise ValueError(f"quality: expected an int or [B={B}] ints, got {quality!r}")
    if isinstance(quality, int) and not 1 <= quality <= 100:
        raise ValueError(f"quality: expected values in [1, 100], got {quality}")
    q = torch.as_tensor(quality, device=x.device)
    if q.dim() == 0:
        q = q.expand(B)
    if q.shape != (B,) or q.is_floating_point() or q.is_complex() or q.dtype == torch.bool:
        raise ValueError(f"quality: expected an int or [B={B}] ints, got {quality!r}")
    if B and (q.min() < 1 or q.max() > 100):
        raise ValueError(f"quality: expected values in [1, 100], got {q.min().item()}..{q.max().item()}")
    if x.numel() == 0:
        return x.clone()
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    ph, pw = (-H) % 16, (-W) % 16
    img = F.pad(x.to(acc), (0, pw, 0, ph), mode="replicate") * 255.0
    r, g, b = img.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128.0
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128.0
    luma_t, chroma_t = (t.to(acc) for t in quant_tables(q))
    d = _dct_matrix(acc, x.device)
    y = _blocks_roundtrip(y, luma_t, d)
    cb, cr = (_blocks_roundtrip(F.avg_pool2d(c[:, None], 2)[:, 0], chroma_t, d) for c in (cb, cr))
    # libjpeg's "fancy" h2v2 upsampling (9/16, 3/16, 3/16, 1/16 weights) is bilinear with half-pixel centres.
    cb, cr = (F.interpolate(c[:, None], scale_factor=2, mode="bilinear", align_corners=False)[:, 0] - 128.0 for c in (cb, cr))
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return (rgb / 255.0).clamp_(0.0, 1.0)[:, :, :H, :W].to(x.dtype)


__all__ = ["jpeg", "quant_tables"]
