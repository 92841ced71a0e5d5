"""Corruption operators as objects: the forward models of the RSD paper (``y = A x + sigma eps``).

Each operator has ``A`` (the linear map), ``A_adjoint`` (its exact adjoint), ``A_normal``
(``A^H A``) and ``forward`` / call (the measurement: ``A`` plus any noise in the chain). They work
on batches ``[B, C, H, W]``, are differentiable (the ops' backward is their adjoint) and compose:
``Compose(Blur(2.0), Inpainting(0.5, seed), Noise(0.05, seed))`` or ``Noise(...) @ Blur(...)``
(right to left, like matrices).

Available: :class:`Blur`, :class:`Filter2D`, :class:`Downsample`, :class:`Inpainting`,
:class:`MultiCoilMRI`, :class:`Noise`, :class:`Compose`.
"""
from __future__ import annotations

import torch

from .blur import gaussian_blur, gaussian_blur_adjoint
from .filter2d_op import filter2d, filter2d_adjoint
from .masks import apply_mask
from .mri import mri_adjoint, mri_forward
from .noise import add_noise
from .resample import downsample, downsample_adjoint


class Operator:
    """Base: subclasses define ``A`` and ``A_adjoint``; ``forward`` defaults to ``A``."""

    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def A_normal(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x``."""
        return self.A_adjoint(self.A(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The measurement of ``x`` (``A x`` plus the noise of any :class:`Noise` in the chain)."""
        return self.A(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def __matmul__(self, other: "Operator") -> "Compose":
        """``self @ other``: apply ``other`` first."""
        return Compose(other, self)


class Blur(Operator):
    """Separable Gaussian blur (:func:`hypir_kernels.gaussian_blur`); ``sigma`` a float, ``[B]``
    or ``[B, 2]``."""

    def __init__(self, sigma, kernel_size: int | None = None, padding: str = "reflect"):
        self.sigma, self.kernel_size, self.padding = sigma, kernel_size, padding

    def A(self, x):
        return gaussian_blur(x, self.sigma, self.kernel_size, self.padding)

    def A_adjoint(self, y):
        return gaussian_blur_adjoint(y, self.sigma, self.kernel_size, self.padding)


class Filter2D(Operator):
    """Per-sample 2-D filtering (:func:`hypir_kernels.filter2d`); ``kernels`` ``[B, k, k]``."""

    def __init__(self, kernels: torch.Tensor, padding: str = "reflect"):
        self.kernels, self.padding = kernels, padding

    def A(self, x):
        return filter2d(x, self.kernels, self.padding)

    def A_adjoint(self, y):
        return filter2d_adjoint(y, self.kernels, self.padding)


class Downsample(Operator):
    """Down-sampling by an integer ``factor`` (:func:`hypir_kernels.downsample`, ``mode`` "area"
    or "bicubic")."""

    def __init__(self, factor: int, mode: str = "area"):
        self.factor, self.mode = factor, mode

    def A(self, x):
        return downsample(x, self.factor, self.mode)

    def A_adjoint(self, y):
        return downsample_adjoint(y, self.factor, self.mode)


class Inpainting(Operator):
    """Random Bernoulli(``keep``) mask from Philox (:func:`hypir_kernels.apply_mask`), never
    stored; self-adjoint. :meth:`further` is the Ambient-Diffusion operator ``Ã`` whose mask is a
    subset of this one's that drops a further fraction ``delta`` of the kept entries."""

    def __init__(self, keep: float, seed: int, shared_channels: bool = True, offsets=None, _delta: float | None = None):
        self.keep, self.seed, self.shared_channels, self.offsets, self._delta = keep, seed, shared_channels, offsets, _delta

    def further(self, delta: float) -> "Inpainting":
        return Inpainting(self.keep, self.seed, self.shared_channels, self.offsets, _delta=delta)

    def A(self, x):
        kw = dict(shared_channels=self.shared_channels, offsets=self.offsets)
        if self._delta is None:
            return apply_mask(x, self.keep, self.seed, **kw)
        return apply_mask(x, self.keep, self.seed, further_delta=self._delta, **kw)[1]

    A_adjoint = A

    def A_normal(self, x):
        return self.A(x)  # a mask is idempotent


class MultiCoilMRI(Operator):
    """``y = M F_c (S x)`` (:func:`hypir_kernels.mri_forward`); ``maps`` ``[B, Nc, H, W]``,
    ``mask`` ``[B, H, W]`` or a column mask ``[B, W]``."""

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor):
        self.maps, self.mask = maps, mask

    def A(self, x):
        return mri_forward(x, self.maps, self.mask)

    def A_adjoint(self, y):
        return mri_adjoint(y, self.maps, self.mask)


class Noise(Operator):
    """Additive Gaussian noise (:func:`hypir_kernels.add_noise`): identity as a linear map, the
    noise is added by ``forward``. ``sigma`` a float or ``[B]``."""

    def __init__(self, sigma, seed: int, offsets=None):
        self.sigma, self.seed, self.offsets = sigma, seed, offsets

    def A(self, x):
        return x

    def A_adjoint(self, y):
        return y

    def forward(self, x):
        return add_noise(x, self.sigma, self.seed, offsets=self.offsets)


class Compose(Operator):
    """``Compose(op1, op2, ...)`` applies ``op1`` first: ``A = A_n ... A_1``, the adjoint in reverse
    order, and ``forward`` runs each operator's ``forward`` (so noise enters where it stands)."""

    def __init__(self, *ops: Operator):
        if not ops or not all(isinstance(op, Operator) for op in ops):
            raise ValueError(f"ops: expected one or more Operator instances, got {ops!r}")
        self.ops = ops

    def A(self, x):
        for op in self.ops:
            x = op.A(x)
        return x

    def A_adjoint(self, y):
        for op in reversed(self.ops):
            y = op.A_adjoint(y)
        return y

    def forward(self, x):
        for op in self.ops:
            x = op.forward(x)
        return x
