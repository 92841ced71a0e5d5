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

from hypir_kernels.checks import check_tensor

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


VARIANTS = ("ours", "released")


def released_quant_tables(quality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tables of the HYPIR release's DiffJPEG (BasicSR ``utils/diffjpeg.py``) for float
    qualities ``[B]``: the IJG tables times ``(5000 / q or 200 - 2 q) / 100`` (float32, as it
    computes them), neither floored nor clamped, the luma table transposed (its chroma table is
    symmetric). ``([B, 8, 8] luma, [B, 8, 8] chroma)``."""
    q = quality.to(torch.float32)
    factor = (torch.where(q < 50, 5000.0 / q, 200.0 - q * 2) / 100.0)[:, None, None]
    luma = torch.tensor(_LUMA, dtype=torch.float32, device=quality.device).reshape(8, 8).T
    chroma = torch.tensor(_CHROMA, dtype=torch.float32, device=quality.device).reshape(8, 8)
    return luma * factor, chroma * factor


def _released_cosines(device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DiffJPEG's DCT as it holds it: ``[8, 8, 8, 8]`` products of cosines (float64, then float32)
    for the forward ``[x, y, u, v]`` and inverse transforms, and the ``alpha_u alpha_v`` weights."""
    i = torch.arange(8, dtype=torch.float64)
    c = torch.cos((2 * i[:, None] + 1) * i[None, :] * math.pi / 16)  # c[x, u]
    forward = (c[:, None, :, None] * c[None, :, None, :]).float()
    inverse = (c.T[:, None, :, None] * c.T[None, :, None, :]).float()
    alpha = torch.tensor([1 / math.sqrt(2)] + [1.0] * 7, dtype=torch.float64)
    return forward.to(device), inverse.to(device), torch.outer(alpha, alpha).float().to(device)


def _released_jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """The release's DiffJPEG round trip, op for op in its order and float32 arithmetic, so that
    the quantiser's exact ties (frequent on 8-bit images) round the way the release rounds them."""
    B, _, H, W = x.shape
    ph, pw = (-H) % 16, (-W) % 16
    img = F.pad(x.float(), (0, pw, 0, ph)) * 255
    H2, W2 = H + ph, W + pw
    to_ycc = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                          device=x.device).T
    from_ycc = torch.tensor([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]], device=x.device).T
    shift = torch.tensor([0.0, 128.0, 128.0], device=x.device)
    ycc = torch.tensordot(img.permute(0, 2, 3, 1), to_ycc, dims=1) + shift
    planes = [ycc[..., 0]] + [F.avg_pool2d(ycc[..., k][:, None], 2)[:, 0] for k in (1, 2)]
    forward, inverse, alpha = _released_cosines(x.device)
    tables = released_quant_tables(quality)
    out = []
    for k, plane in enumerate(planes):
        h, w = plane.shape[1:]
        blocks = plane.reshape(B, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(B, -1, 8, 8)
        coef = alpha * 0.25 * torch.tensordot(blocks - 128, forward, dims=2)
        table = tables[min(k, 1)][:, None]  # [B, 1, 8, 8]
        coef = torch.round(coef / table) * table
        blocks = 0.25 * torch.tensordot(coef * alpha, inverse, dims=2) + 128
        plane = blocks.reshape(B, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(B, h, w)
        out.append(plane if k == 0 else plane.repeat_interleave(2, 1).repeat_interleave(2, 2))
    rgb = torch.tensordot(torch.stack(out, -1) + torch.tensor([0.0, -128.0, -128.0], device=x.device), from_ycc, dims=1)
    return (rgb.permute(0, 3, 1, 2).clamp(0, 255) / 255)[:, :, :H, :W]


def _check_quality(quality, B: int, device, variant: str) -> torch.Tensor:
    floats = variant == "released"  # the release draws float qualities (uniform_), IJG takes ints
    want = f"a number or [B={B}] floats in [1, 100)" if floats else f"an int or [B={B}] ints in [1, 100]"
    if isinstance(quality, bool) or not isinstance(quality, (int, float, torch.Tensor)) or \
            (isinstance(quality, float) and not floats):
        raise ValueError(f"quality: expected {want}, got {quality!r}")
    q = torch.as_tensor(quality, device=device)
    if q.dim() == 0:
        q = q.expand(B)
    if q.shape != (B,) or q.is_complex() or q.dtype == torch.bool or (q.is_floating_point() and not floats):
        raise ValueError(f"quality: expected {want}, got {quality!r}")
    # quality 100 makes the release's tables 0 (a division by zero), so it stops below.
    if B and (not bool(torch.isfinite(q.double()).all()) or q.min() < 1 or (q.max() >= 100 if floats else q.max() > 100)):
        raise ValueError(f"quality: expected {want}, got {q.min().item()}..{q.max().item()}")
    return q


def jpeg(x: torch.Tensor, quality, variant: str = "ours") -> torch.Tensor:
    """``[B, 3, H, W]`` RGB in [0, 1] compressed at ``quality``.

    ``variant="ours"`` (the default): libjpeg's maths as above; ``quality`` an int or ``[B]`` ints
    in [1, 100]. ``variant="released"``: the DiffJPEG the HYPIR release trained with (BasicSR
    ``diffjpeg.py``, ``differentiable=False``): float qualities in [1, 100), tables neither floored
    nor clamped with the luma table transposed (:func:`released_quant_tables`), zero padding to a
    multiple of 16, nearest-neighbour chroma upsampling, float32 maths in its order."""
    check_tensor("x", x, dims=4, dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16))
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    B, C, H, W = x.shape
    if C != 3:
        raise ValueError(f"x: expected 3 (RGB) channels, got shape {tuple(x.shape)}")
    q = _check_quality(quality, B, x.device, variant)
    if x.numel() == 0:
        return x.clone()
    if variant == "released":
        return _released_jpeg(x, q).to(x.dtype)
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
    cb, cr = (F.interpolate(c[:, None], scale_factor=2, mode="bilinear", align_corners=False)[:, 0] - 128.0
              for c in (cb, cr))
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return (rgb / 255.0).clamp_(0.0, 1.0)[:, :, :H, :W].to(x.dtype)


__all__ = ["VARIANTS", "jpeg", "quant_tables", "released_quant_tables"]
