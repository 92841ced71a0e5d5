"""Multi-coil MRI benchmark cases, shared by ``python -m hypir_kernels.bench`` and ``benchmarks/``.

B=4, Nc=16, 320x320 complex64, R=4 column masks (every 4th column plus 24 central ACS columns),
forward and adjoint on deepinv's real-view layout. Anchors: deepinv ``MultiCoilMRI`` (same maps
and mask) and the plain torch formula ``fftshift(fft2(ifftshift(S x))) * M``.
"""
from __future__ import annotations

import torch

from ..mri import mri_adjoint, mri_forward

B, NC, H, W = 4, 16, 320, 320


def make_case(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 2, H, W, generator=g)
    maps = torch.complex(torch.randn(B, NC, H, W, generator=g), torch.randn(B, NC, H, W, generator=g))
    cols = torch.zeros(B, W)
    cols[:, ::4] = 1
    cols[:, W // 2 - 12: W // 2 + 12] = 1
    return x, maps, cols


def full_mask(cols: torch.Tensor) -> torch.Tensor:
    return cols[:, None, :].expand(-1, H, -1).contiguous()


def ours_forward(x, maps, cols):
    return mri_forward(x, maps, cols)


def ours_adjoint(y, maps, cols):
    return mri_adjoint(y, maps, cols)


def _shifted(v, inverse):
    f = torch.fft.ifft2 if inverse else torch.fft.fft2
    return torch.fft.fftshift(f(torch.fft.ifftshift(v, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def torch_forward(x, maps, mask):
    """Anchor: the plain torch formula on the real view (complex in, real view out, like ours)."""
    y = _shifted(maps * torch.complex(x[:, 0], x[:, 1])[:, None], False) * mask[:, None]
    return torch.stack([y.real, y.imag], 1)


def torch_adjoint(y, maps, mask):
    img = (maps.conj() * _shifted(torch.complex(y[:, 0], y[:, 1]) * mask[:, None], True)).sum(1)
    return torch.stack([img.real, img.imag], 1)


def deepinv_physics(maps, mask):
    import deepinv

    return deepinv.physics.MultiCoilMRI(mask=mask[:, None].clone(), coil_maps=maps, img_size=(H, W))
