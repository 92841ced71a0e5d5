"""EDM (Karras et al. 2022) pieces RSD builds on: the preconditioned denoiser, the training noise
distribution and loss weight, the rho-7 noise schedule, and the samplers (deterministic Heun, and
the Ambient-Tweedie sampler of RSD Appendix E.2, Algorithm 3, optionally truncated).

Shapes: images ``[B, C, H, W]`` (MRI: ``C = 2``, the real and imaginary parts); ``sigma`` a float
or ``[B]``. Conditioning channels (the Ambient-inpainting mask, the MRI mask) go in ``cond``
``[B, C_cond, H, W]`` and are concatenated to the scaled input.

Masked inputs (Ambient inpainting): where the network sees nothing (``seen = 0``) there is no noisy
value to skip to, so those pixels are preconditioned as at infinite noise, ``c_skip = 0`` and
``c_out = sigma_data``, and weighted ``1 / sigma_data^2`` in the loss (unit weight on ``F`` as
everywhere else). With EDM's plain coefficients ``c_out -> 0`` as ``sigma -> 0`` there, so the
network must output ``~ x / sigma`` and a small one cannot: its samples fall back to the masked
input (our first miniature inpainting teacher did exactly that). Daras et al. keep the plain
coefficients with a large network; this is our deviation.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

SIGMA_DATA = 0.5
P_MEAN, P_STD = -1.2, 1.2  # ln(sigma) ~ N(P_MEAN, P_STD^2) in training
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B,C,H,W], sigma [B]) -> D(x)


def _sigma_column(sigma, x: torch.Tensor) -> torch.Tensor:
    """``sigma`` (float, 0-d or ``[B]``) as ``[B, 1, 1, 1]`` in ``x``'s dtype and device."""
    if isinstance(sigma, bool) or not (isinstance(sigma, (int, float)) or (torch.is_tensor(sigma) and not sigma.is_complex())):
        raise ValueError(f"sigma: expected a number or a [B] tensor, got {type(sigma).__name__}")
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.dim() == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma: expected a number or a [{x.shape[0]}] tensor, got shape {tuple(s.shape)}")
    if not bool(torch.all((s > 0) & torch.isfinite(s))):
        raise ValueError("sigma: expected positive finite noise levels")
    return s.view(-1, 1, 1, 1)


def preconditioning(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> tuple[torch.Tensor, ...]:
    """EDM's ``c_skip, c_out, c_in, c_noise`` for noise levels ``sigma`` (any shape)."""
    s2, d2 = sigma * sigma, sigma_data * sigma_data
    c_skip = d2 / (s2 + d2)
    c_out = sigma * sigma_data / (s2 + d2).sqrt()
    c_in = 1 / (s2 + d2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def loss_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """EDM's ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` (unit effective weight)."""
    return (sigma * sigma + sigma_data**2) / (sigma * sigma_data) ** 2


def masked_loss_weight(sigma: torch.Tensor, seen: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """Per-pixel weight for a denoiser called with ``seen``: ``lambda(sigma)`` where seen, ``1 / sigma_data^2``
    where not (``sigma`` ``[B]``, ``seen`` 0/1 broadcastable to ``[B, C, H, W]``)."""
    if not (torch.is_tensor(sigma) and sigma.dim() == 1 and sigma.is_floating_point()
            and bool(torch.all((sigma > 0) & torch.isfinite(sigma)))):
        raise ValueError(f"sigma: expected a [B] tensor of positive finite noise levels, got "
                         f"{tuple(sigma.shape) if torch.is_tensor(sigma) else type(sigma).__name__}")
    if not (torch.is_tensor(seen) and seen.dim() == 4 and seen.shape[0] == sigma.shape[0]):
        raise ValueError(f"seen: expected a 0/1 [{sigma.shape[0]}, C, H, W] tensor, got "
                         f"{tuple(seen.shape) if torch.is_tensor(seen) else type(seen).__name__}")
    lam = loss_weight(sigma, sigma_data).view(-1, 1, 1, 1)
    return seen * lam + (1 - seen) / sigma_data**2


def training_sigmas(batch: int, generator: torch.Generator, device="cpu", p_mean: float = P_MEAN,
                    p_std: float = P_STD) -> torch.Tensor:
    """``[batch]`` noise levels with ``ln sigma ~ N(p_mean, p_std^2)``."""
    return (torch.randn(batch, generator=generator) * p_std + p_mean).exp().to(device)


def karras_sigmas(steps: int = 18, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                  rho: float = RHO) -> torch.Tensor:
    """The rho-schedule ``sigma_0 = sigma_max > ... > sigma_{steps-1} = sigma_min``, then 0 (float64)."""
    if steps < 1:
        raise ValueError(f"steps: expected >= 1, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"sigma_min, sigma_max: expected 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    i = torch.arange(steps, dtype=torch.float64)
    frac = i / max(steps - 1, 1)
    s = (sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)])


def sigma_at(t, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO):
    """The same schedule as a function of ``t`` in [0, 1] (``t = 0``: ``sigma_max``; SiD draws t <= 0.8)."""
    return (sigma_max ** (1 / rho) + t * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


class EDMPrecond(nn.Module):
    """``D(x, sigma, cond) = c_skip x + c_out F([c_in x, cond], c_noise)``; with ``seen`` (0/1,
    broadcastable to ``x``), ``D = seen (c_skip x + c_out F) + (1 - seen) sigma_data F`` (see the
    module doc).

    Args:
        net: ``F``; called ``net(input, c_noise)`` with ``input [B, C + C_cond, H, W]`` and
            ``c_noise [B]``, returning ``[B, C, H, W]``. A diffusers ``UNet2DModel`` is accepted as
            it is (its ``.sample`` output is taken).
        sigma_data: EDM's data standard deviation (0.5).
    """

    def __init__(self, net: nn.Module, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)

    def forward(self, x: torch.Tensor, sigma, cond: torch.Tensor | None = None,
                seen: torch.Tensor | None = None) -> torch.Tensor:
        if not (torch.is_tensor(x) and x.dim() == 4 and x.is_floating_point()):
            raise ValueError(f"x: expected a float [B, C, H, W] tensor, got {getattr(x, 'shape', type(x))}")
        s = _sigma_column(sigma, x)
        c_skip, c_out, c_in, c_noise = preconditioning(s, self.sigma_data)
        inp = c_in * x
        if cond is not None:
            if cond.shape[0] != x.shape[0] or cond.shape[-2:] != x.shape[-2:]:
                raise ValueError(f"cond: expected [{x.shape[0]}, C, {x.shape[2]}, {x.shape[3]}], got {tuple(cond.shape)}")
            inp = torch.cat([inp, cond.to(x.dtype)], dim=1)
        out = self.net(inp, c_noise.flatten())
        out = getattr(out, "sample", out).to(x.dtype)
        if seen is None:
            return c_skip * x + c_out * out
        if not (torch.is_tensor(seen) and seen.dim() == 4 and seen.shape[0] == x.shape[0]
                and seen.shape[1] in (1, x.shape[1]) and seen.shape[-2:] == x.shape[-2:]):
            raise ValueError(f"seen: expected a 0/1 [{x.shape[0]}, 1 or {x.shape[1]}, {x.shape[2]}, {x.shape[3]}] "
                             f"tensor, got {tuple(seen.shape) if torch.is_tensor(seen) else type(seen).__name__}")
        seen = seen.to(x.dtype)
        return seen * (c_skip * x + c_out * out) + (1 - seen) * self.sigma_data * out


@torch.no_grad()
def heun_sample(denoise: Denoiser, noise: torch.Tensor, steps: int = 18, sigma_min: float = SIGMA_MIN,
                sigma_max: float = SIGMA_MAX, rho: float = RHO, progress: bool = False) -> torch.Tensor:
    """EDM's deterministic 2nd-order sampler (Karras et al. Algorithm 1, no churn): ``noise`` is a
    standard normal ``[B, C, H, W]``; ``steps`` levels of :func:`karras_sigmas` (``2 steps - 1``
    network calls)."""
    from tqdm.auto import tqdm

    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho).tolist()
    x = noise.to(torch.float64) * sigmas[0]
    batch = x.shape[0]
    for i in tqdm(range(steps), desc="heun", disable=not progress):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = (x - denoise(x.to(noise.dtype), torch.full((batch,), s, dtype=noise.dtype, device=noise.device)).double()) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d2 = (x_next - denoise(x_next.to(noise.dtype),
                                   torch.full((batch,), s_next, dtype=noise.dtype, device=noise.device)).double()) / s_next
            x_next = x + (s_next - s) * (d + d2) / 2
        x = x_next
    return x.to(noise.dtype)


@torch.no_grad()
def ambient_tweedie_sample(denoise: Denoiser, noise: torch.Tensor, sigma_n: float, steps: int = 18,
                           truncate: bool = True, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                           rho: float = RHO) -> torch.Tensor:
    """RSD Appendix E.2, Algorithm 3: Euler steps ``x <- x - (s - s') / s (x - D(x, s))``; with
    ``truncate``, return ``D(x, s)`` at the first level whose successor is below ``sigma_n`` (the
    data's own noise level, where the teacher's training stopped)."""
    if not sigma_n >= 0 or math.isinf(sigma_n):
        raise ValueError(f"sigma_n: expected a finite number >= 0, got {sigma_n}")
    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho).tolist()
    x = noise.to(torch.float64) * sigmas[0]
    batch = x.shape[0]
    x0 = x
    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        x0 = denoise(x.to(noise.dtype), torch.full((batch,), s, dtype=noise.dtype, device=noise.device)).double()
        if truncate and s_next < sigma_n:
            return x0.to(noise.dtype)
        x = x - (s - s_next) / s * (x - x0)
    return x.to(noise.dtype)
