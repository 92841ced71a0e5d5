"""Score identity Distillation through a corruption (RSD phase II, paper §3 and Appendix F; SiD,
Zhou et al. 2024): the pieces a distillation step is made of, independent of networks and data.

A *view* says how a task sees generator samples ``x``: ``observe(x, seed) -> (w, ctx)`` applies
the corruption ``A`` with fresh random draws (masks) and stays differentiable in ``x``;
``noisy(w, sigma, generator)`` adds diffusion noise in the measurement space; ``predict(model, w_t,
sigma, ctx, seed)`` is a phase-I model's estimate of ``w`` from ``w_t``; ``fake_loss(model, x, seed,
generator)`` is the phase-I objective of the task on ``A(x) (+ sigma_n e)`` (``[B]``). Views for the
image tasks live in :mod:`hypir.rsd.distill`; :mod:`hypir.rsd.theory` has a matrix one.

Each iteration (Algorithm 6): :func:`fake_score_loss` trains the fake score on corrupted generator
samples, then :func:`generator_loss` -- the SiD loss at ``sigma`` from the rho-7 schedule with
``t <= t_max`` -- trains the generator through ``A``, the teacher and the fake score.
"""
from __future__ import annotations

import torch

from .edm import sigma_at

ALPHA, T_MAX, SIGMA_INIT = 1.2, 0.8, 2.5


def sid_sigmas(batch: int, generator: torch.Generator, t_max: float = T_MAX) -> torch.Tensor:
    """``[batch]`` noise levels ``sigma(t)`` of the rho-7 schedule, ``t ~ U[0, t_max]`` counted from
    ``sigma_min`` (SiD's ``tmax = 800`` of 1000): ``sigma in [0.002, ~24.4]`` at ``t_max = 0.8``."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ValueError(f"batch: expected an int >= 0, got {batch!r}")
    if not 0 < t_max <= 1:
        raise ValueError(f"t_max: expected a number in (0, 1], got {t_max!r}")
    t = torch.rand(batch, generator=generator, dtype=torch.float64) * t_max
    return sigma_at(1 - t).float()


def sid_loss(real: torch.Tensor, fake: torch.Tensor, w: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """SiD's generator loss per sample ``[B]``: ``(f_r - f_f) . ((f_r - w) - alpha (f_r - f_f))``
    divided by ``mean |w - f_r|`` (no gradient through the normaliser), averaged over elements.
    ``real``/``fake`` are the teacher's and the fake score's predictions of ``w`` (complex tensors
    are compared as their real views). A sample with a non-finite value contributes 0 (as SiD drops it)."""
    for name, t in (("real", real), ("fake", fake), ("w", w)):
        if not (torch.is_tensor(t) and (t.is_floating_point() or t.is_complex()) and t.dim() >= 2 and t.shape[0] > 0):
            raise ValueError(f"{name}: expected a float or complex [B, ...] tensor with B > 0, got "
                             f"{tuple(t.shape) if torch.is_tensor(t) else type(t).__name__}")
        if t.shape != w.shape or t.dtype != w.dtype:
            raise ValueError(f"{name}: expected the shape and dtype of w {tuple(w.shape)} {w.dtype}, got "
                             f"{tuple(t.shape)} {t.dtype}")
    if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha == alpha and abs(alpha) != float("inf")):
        raise ValueError(f"alpha: expected a finite number, got {alpha!r}")
    if torch.is_complex(w):
        real, fake, w = (torch.view_as_real(t) for t in (real, fake, w))
    finite = (torch.isfinite(real) & torch.isfinite(fake) & torch.isfinite(w)).flatten(1).all(1)
    out = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    if bool(finite.any()):
        r, f, g = real[finite], fake[finite], w[finite]
        with torch.no_grad():
            norm = (g - r).abs().flatten(1).mean(1).clamp(min=1e-5)
        diff = r - f
        per = (diff * ((r - g) - alpha * diff)).flatten(1).mean(1) / norm
        out = out.index_put((finite.nonzero().flatten(),), per)
    return out


def fake_score_loss(view, fake, x: torch.Tensor, seed: int, generator: torch.Generator) -> torch.Tensor:
    """The fake score's phase-I loss ``[B]`` on the corrupted (detached) generator samples ``x``."""
    return view.fake_loss(fake, x.detach(), seed, generator)


def generator_loss(view, teacher, fake, x: torch.Tensor, seed: int, generator: torch.Generator,
                   alpha: float = ALPHA, t_max: float = T_MAX) -> torch.Tensor:
    """SiD's generator loss ``[B]`` on ``w = A(x)`` (noiseless: the teacher's own objective handled the
    data's noise). ``sigma`` is clipped at the view's ``sigma_n``: an Ambient-Tweedie teacher was never
    trained below it."""
    w, ctx = view.observe(x, seed)
    sigma = sid_sigmas(x.shape[0], generator, t_max).clamp(min=getattr(view, "sigma_n", 0.0)).to(x.device)
    w_t = view.noisy(w, sigma, generator)
    return sid_loss(view.predict(teacher, w_t, sigma, ctx, seed), view.predict(fake, w_t, sigma, ctx, seed), w,
                    alpha)
