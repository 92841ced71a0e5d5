"""Reference multi-coil MRI: ``y = M F_c (S x)`` and its adjoint by the textbook formula, with the
orthonormal centred 2-D FFT ``F_c = fftshift . fft2 . ifftshift`` written out (explicit shift
copies, every coil and column transformed). :mod:`hypir_kernels.mri` checks the arguments."""
from __future__ import annotations

import torch


def fft2c(v: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """The orthonormal centred 2-D (inverse) FFT over the last two dims."""
    f = torch.fft.ifft2 if inverse else torch.fft.fft2
    return torch.fft.fftshift(f(torch.fft.ifftshift(v, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def _coil_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``mask`` ([B, H, W], or columns [B, W]) broadcastable against ``[B, Nc, H, W]``."""
    m = mask.to(dtype)
    return m[:, None, None, :] if mask.dim() == 2 else m[:, None]


def _as_real_view(v: torch.Tensor, real_view: bool) -> torch.Tensor:
    return torch.stack([v.real, v.imag], dim=1) if real_view else v


def mri_forward(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, real_view: bool) -> torch.Tensor:
    """``x`` complex ``[B, H, W]`` -> ``y`` complex ``[B, Nc, H, W]`` (its real view ``[B, 2, Nc, H, W]``
    when ``real_view``)."""
    y = fft2c(maps * x[:, None]) * _coil_mask(mask, maps.real.dtype)
    return _as_real_view(y, real_view)


def mri_adjoint(y: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, real_view: bool) -> torch.Tensor:
    """``y`` complex ``[B, Nc, H, W]`` (or, when ``real_view``, its real view) -> ``S^H F_c^H M y``,
    complex ``[B, H, W]`` (the real view ``[B, 2, H, W]`` when ``real_view``)."""
    yc = torch.complex(y[:, 0], y[:, 1]) if real_view else y
    x = (maps.conj() * fft2c(yc * _coil_mask(mask, maps.real.dtype), inverse=True)).sum(1)
    return _as_real_view(x, real_view)
