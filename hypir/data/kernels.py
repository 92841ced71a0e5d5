"""Real-ESRGAN's random blur kernels, drawn for a whole batch at once from a seed.

The blur kernels of the on-device degradation (:mod:`hypir.data.realesrgan`). Kernel families and
their parameters follow Real-ESRGAN's ``random_mixed_kernels`` and ``circular_lowpass_kernel``
(BasicSR ``data/degradations.py``, copied by the HYPIR release):

* ``iso`` / ``aniso``: Gaussian ``exp(-0.5 x^T S^-1 x)`` with ``S = R diag(sx^2, sy^2) R^T``
  (``iso``: ``sy = sx``, no rotation);
* ``generalized_iso`` / ``generalized_aniso``: ``exp(-0.5 (x^T S^-1 x)^beta)``, beta from
  ``betag_range`` (half the draws in ``[lo, 1]``, half in ``[1, hi]``: :func:`split_beta`);
* ``plateau_iso`` / ``plateau_aniso``: ``1 / (1 + (x^T S^-1 x)^beta)``, beta from ``betap_range`` (likewise);
* ``sinc``: the circular low-pass ``wc J1(wc r) / (2 pi r)`` (``wc^2 / (4 pi)`` at the centre).

Every kernel is normalised to sum 1 and sits centred in a ``[size, size]`` array (Real-ESRGAN pads
to 21), zero outside its own odd support ``k``. All random numbers are drawn on the CPU from one
``torch.Generator`` seeded with ``seed``, then the kernels are built on ``device`` in one batched
computation: the same seed gives the same kernels on every device (up to float rounding).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hypir_kernels.checks import check_int, check_probability, check_range, check_seed, check_weights

KINDS = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


@dataclass(frozen=True)
class KernelSpec:
    """Real-ESRGAN's kernel settings (defaults: its first degradation stage)."""

    kinds: tuple[str, ...] = KINDS
    probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sizes: tuple[int, ...] = tuple(range(7, 22, 2))  # kernel_range: odd sizes 7..21, uniform
    sigma: tuple[float, float] = (0.2, 3.0)
    rotation: tuple[float, float] = (-math.pi, math.pi)
    betag: tuple[float, float] = (0.5, 4.0)
    betap: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    pad_to: int = 21

    def __post_init__(self):
        if not self.kinds or any(k not in KINDS for k in self.kinds):
            raise ValueError(f"kinds: expected a non-empty subset of {KINDS}, got {self.kinds!r}")
        check_weights("probs", self.probs, len(self.kinds))
        check_int("pad_to", self.pad_to, minimum=1)
        if not self.sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 or s % 2 == 0 or s > self.pad_to
                                 for s in self.sizes):
            raise ValueError(f"sizes: expected odd ints in [1, pad_to={self.pad_to}], got {self.sizes!r}")
        for name in ("sigma", "rotation"):
            check_range(name, getattr(self, name), -math.inf)
        for name in ("betag", "betap"):  # shape parameters: positive
            check_range(name, getattr(self, name), 0.0)
        if self.sigma[0] <= 0:
            raise ValueError(f"sigma: expected a positive range, got {self.sigma!r}")
        check_probability("sinc_prob", self.sinc_prob)
        if self.pad_to % 2 == 0:
            raise ValueError(f"pad_to: expected an odd size, got {self.pad_to}")


@dataclass
class KernelDraws:
    """The per-sample random parameters (CPU tensors ``[B]``), kept for inspection and tests."""

    kind: torch.Tensor  # index into KINDS, or -1 for sinc
    size: torch.Tensor
    sigma_x: torch.Tensor
    sigma_y: torch.Tensor
    theta: torch.Tensor
    beta: torch.Tensor
    omega_c: torch.Tensor


def split_beta(beta_range: tuple[float, float], batch: int, generator: torch.Generator) -> torch.Tensor:
    """``[batch]`` shape parameters drawn as Real-ESRGAN/BasicSR and the HYPIR release do
    (``random_bivariate_generalized_Gaussian`` / ``_plateau``): with probability 1/2 uniform in
    ``[lo, 1]``, else uniform in ``[1, hi]`` -- so half the kernels are sharper than a Gaussian
    (beta < 1) whatever ``hi`` is, and plateau kernels with ``betap = (1, 2)`` have beta = 1 half the
    time. (One uniform over ``[lo, hi]`` would give beta < 1 only ``(1 - lo) / (hi - lo)`` of the time.)
    A range that does not contain 1 is drawn uniformly."""
    lo, hi = check_range("beta_range", beta_range, low=0.0)
    if not lo <= 1 <= hi:
        return lo + (hi - lo) * torch.rand(batch, generator=generator, dtype=torch.float64)
    low_half = torch.rand(batch, generator=generator, dtype=torch.float64) < 0.5
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    return torch.where(low_half, lo + (1 - lo) * u, 1 + (hi - 1) * u)


def draw_kernel_params(batch: int, spec: KernelSpec, generator: torch.Generator) -> KernelDraws:
    """All random numbers of a batch's kernels, in a fixed order, on the CPU."""
    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(batch, generator=generator, dtype=torch.float64)

    probs = torch.tensor(spec.probs, dtype=torch.float64)
    kind_local = torch.multinomial(probs / probs.sum(), batch, replacement=True, generator=generator) if batch else \
        torch.zeros(0, dtype=torch.int64)
    kind = torch.tensor([KINDS.index(spec.kinds[i]) for i in kind_local.tolist()], dtype=torch.int64)
    size = torch.tensor(spec.sizes, dtype=torch.int64)[torch.randint(len(spec.sizes), (batch,), generator=generator)]
    sigma_x, sigma_y = uniform(*spec.sigma), uniform(*spec.sigma)
    theta = uniform(*spec.rotation)
    beta_g, beta_p = split_beta(spec.betag, batch, generator), split_beta(spec.betap, batch, generator)
    sinc = torch.rand(batch, generator=generator, dtype=torch.float64) < spec.sinc_prob
    # Real-ESRGAN: wc in [pi/3, pi] for kernels smaller than 13, else [pi/5, pi].
    omega_small, omega_large = uniform(math.pi / 3, math.pi), uniform(math.pi / 5, math.pi)
    omega_c = torch.where(size < 13, omega_small, omega_large)

    iso = torch.isin(kind, torch.tensor([0, 2, 4]))
    sigma_y = torch.where(iso, sigma_x, sigma_y)
    theta = torch.where(iso, torch.zeros_like(theta), theta)
    beta = torch.where(kind >= 4, beta_p, torch.where(kind >= 2, beta_g, torch.ones_like(beta_g)))
    kind = torch.where(sinc, torch.full_like(kind, -1), kind)
    return KernelDraws(kind, size, sigma_x, sigma_y, theta, beta, omega_c)


def build_kernels(d: KernelDraws, pad_to: int, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """``[B, pad_to, pad_to]`` kernels from drawn parameters, computed in float64 then cast."""
    B = d.kind.shape[0]
    r = pad_to // 2
    ax = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    xx, yy = xx[None], yy[None]
    col = lambda t: t.to(device)[:, None, None]  # noqa: E731
    sx, sy, th, beta, wc = col(d.sigma_x), col(d.sigma_y), col(d.theta), col(d.beta), col(d.omega_c)
    # x^T S^-1 x with S = R diag(sx^2, sy^2) R^T: rotate the grid into the kernel's axes.
    c, s = torch.cos(th), torch.sin(th)
    u = c * xx + s * yy
    v = -s * xx + c * yy
    q = (u / sx) ** 2 + (v / sy) ** 2
    kind = col(d.kind)
    gauss = torch.exp(-0.5 * q.pow(beta))
    plateau = 1.0 / (1.0 + q.pow(beta))
    rr = torch.sqrt(xx ** 2 + yy ** 2).expand(B, -1, -1)
    centre = rr == 0
    safe_r = torch.where(centre, torch.ones_like(rr), rr)
    sinc = torch.where(centre, wc ** 2 / (4 * math.pi), wc * torch.special.bessel_j1(wc * safe_r) / (2 * math.pi * safe_r))
    k = torch.where(kind == -1, sinc, torch.where(kind >= 4, plateau, gauss))
    half = col(d.size) // 2
    inside = (xx.abs() <= half) & (yy.abs() <= half)
    k = torch.where(inside, k, torch.zeros_like(k))
    return (k / k.sum(dim=(1, 2), keepdim=True)).to(dtype)


def random_kernels(batch: int, seed: int, spec: KernelSpec | None = None, device="cpu",
                   dtype=torch.float32) -> tuple[torch.Tensor, KernelDraws]:
    """``([B, pad_to, pad_to] kernels, their draws)`` for a batch, reproducible from ``seed``."""
    check_int("batch", batch, minimum=0)
    seed = check_seed("seed", seed)
    spec = spec or KernelSpec()
    g = torch.Generator().manual_seed(seed)
    draws = draw_kernel_params(batch, spec, g)
    return build_kernels(draws, spec.pad_to, device, dtype), draws


__all__ = ["KINDS", "KernelDraws", "KernelSpec", "build_kernels", "draw_kernel_params", "random_kernels", "split_beta"]
