"""The paper's linear theory (RSD §4, Theorem 1) checked with the distillation code path.

Rank-1 Gaussian data ``x = e z`` (``|e| = 1``), observations ``y = A x + sigma eps``, a rank-1
linear generator ``G(z) = u (u . z) / |u|`` (``z ~ N(0, I_d)``, Assumption 3 with
``theta = (u, u/|u|)``) and exact Gaussian scores (Assumption 2): the teacher's of the noisy data,
the fake's of the generator's corrupted law. The generator is trained with
:func:`hypir.rsd.sid.generator_loss` -- the function the image distiller uses -- on noiseless
``A G(z)``. (With a *learnt* rank-1 fake score the fake lags and drifts along its weakly identified
length under Adam's noisy steps, and the run needs far more steps; the theorem assumes exact scores.) Theorem 1: the minimisers satisfy ``|A u|^2 = |A e|^2 + sigma^2`` (``u`` along ``e`` plus
``ker A``), and for the minimum-norm one (``u`` projected onto ``Im A^T``)

    W2^2(p_X, p_G) = (sqrt(1 + sigma^2 / |A e|^2) - 1)^2.

For rank-1 Gaussians ``W2^2(N(0, e e^T), N(0, u u^T)) = |e|^2 + |u|^2 - 2 |e . u|`` exactly, so the
measured value is read off the trained ``u`` (its EMA), projected onto ``Im A^T``: the loss does not
see ``ker A``, where the stochastic gradient is pure noise that Adam turns into a random walk (the
raw ``u``'s value is printed too).

    python -m hypir.rsd.theory        # one line per (A, sigma) case: ... measured W2^2, closed form
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import torch
from torch import nn

from .objectives import standard_loss
from .sid import generator_loss


def closed_form_w2(A: torch.Tensor, e: torch.Tensor, sigma: float) -> float:
    """Theorem 1's ``W2^2`` of the minimum-norm minimiser."""
    ae2 = float((A.double() @ e.double()).pow(2).sum())
    return (math.sqrt(1 + sigma**2 / ae2) - 1) ** 2


def rank1_w2(e: torch.Tensor, u: torch.Tensor) -> float:
    """``W2^2(N(0, e e^T), N(0, u u^T))``."""
    e, u = e.double(), u.double()
    return float(e @ e + u @ u - 2 * (e @ u).abs())


def minimum_norm(A: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The minimum-norm element of ``u + ker A``: ``u`` projected onto ``Im A^T`` (Theorem 1's ``u*``)."""
    return torch.linalg.pinv(A.double()) @ (A.double() @ u.double())


class GaussianDenoiser(nn.Module):
    """The exact denoiser of ``y ~ N(0, S)``: ``D(y_t, s) = S (S + s^2 I)^-1 y_t`` (vectors ``[B, 1, 1, m]``).
    ``cov`` is a matrix or a function returning one (the fake score follows the generator's law)."""

    def __init__(self, cov):
        super().__init__()
        self.cov = cov

    def forward(self, y, sigma, cond=None):
        cov = (self.cov() if callable(self.cov) else self.cov).double()
        lam, q = torch.linalg.eigh(cov)  # D = Q diag(lam / (lam + s^2)) Q^T y
        s = torch.as_tensor(sigma, dtype=torch.float64).expand(y.shape[0]).view(-1, 1)
        coef = (y.double().reshape(y.shape[0], -1) @ q) * lam.clamp(min=0) / (lam.clamp(min=0) + s * s)
        return (coef @ q.T).reshape(y.shape).to(y.dtype)


class Rank1Generator(nn.Module):
    """``G(z) = u (u . z) / |u|``: ``[B, d]`` noise to ``[B, 1, 1, d]`` samples of ``N(0, u u^T)``."""

    def __init__(self, u: torch.Tensor):
        super().__init__()
        self.u = nn.Parameter(u.clone().float())

    def forward(self, z):
        return ((z @ self.u)[:, None] * self.u / self.u.norm()).reshape(z.shape[0], 1, 1, -1)


@dataclass
class MatrixView:
    """How the linear problem sees generator samples: ``w = A x`` (noiseless), Gaussian noise,
    plain denoiser calls, EDM's standard loss for the fake score."""

    A: torch.Tensor
    sigma_n: float = 0.0

    def observe(self, x, seed):
        return (x.reshape(x.shape[0], -1) @ self.A.T).reshape(x.shape[0], 1, 1, -1), None

    def noisy(self, w, sigma, generator):
        return w + sigma.view(-1, 1, 1, 1) * torch.randn(w.shape, generator=generator)

    def predict(self, model, w_t, sigma, ctx, seed):
        return model(w_t, sigma)

    def fake_loss(self, model, x, seed, generator):
        return standard_loss(model, self.observe(x, seed)[0], generator)


def distil(A: torch.Tensor, e: torch.Tensor, sigma: float, steps: int = 1500, batch: int = 1024, lr: float = 5e-3,
           ema: float = 0.99, seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """Train the generator with :func:`generator_loss` against exact scores (Assumption 2: the teacher's
    of the noisy data, the fake's of the generator's corrupted law ``N(0, A u u^T A^T)``); Adam with
    SiD's betas (0, 0.999), constant then linearly decayed over the last third. Returns the EMA ``u``
    and the ``W2^2`` curve of its minimum-norm representative."""
    g = torch.Generator().manual_seed(seed)
    d = A.shape[1]
    teacher = GaussianDenoiser(A @ torch.outer(e, e) @ A.T + sigma**2 * torch.eye(A.shape[0]))
    # a start in Im(A^T) (Theorem 1's minimum-norm branch; e is in it), half the length and ~30 degrees off
    off = A.T @ torch.randn(A.shape[0], generator=g)
    off = off - (off @ e) * e
    u0 = e + 0.6 * off / off.norm()
    gen = Rank1Generator(0.5 * u0 / u0.norm())
    fake = GaussianDenoiser(lambda: A @ torch.outer(gen.u.detach(), gen.u.detach()) @ A.T)
    view = MatrixView(A)
    opt = torch.optim.Adam(gen.parameters(), lr=lr, betas=(0.0, 0.999))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, 3 * (1 - k / steps)))
    avg, curve = gen.u.detach().clone(), []
    for step in range(steps):
        loss = generator_loss(view, teacher, fake, gen(torch.randn(batch, d, generator=g)), step, g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        avg.mul_(ema).add_(gen.u.detach(), alpha=1 - ema)
        curve.append(rank1_w2(e, minimum_norm(A, avg)))
    return avg, curve


def cases() -> list[tuple[str, torch.Tensor, torch.Tensor, float]]:
    """``(name, A, e, sigma)``: identity, a diagonal, and a wide 4x8 operator with ``e`` in its row space."""
    g = torch.Generator().manual_seed(1)
    d = 8
    e = torch.randn(d, generator=g)
    e /= e.norm()
    diag = torch.diag(torch.linspace(0.5, 2.0, d))
    wide = torch.randn(4, d, generator=g) / 2
    e_row = wide.T @ torch.randn(4, generator=g)
    e_row /= e_row.norm()
    return [("identity 8x8", torch.eye(d), e, 0.5), ("identity 8x8", torch.eye(d), e, 1.0),
            ("diagonal 0.5..2", diag, e, 0.5), ("wide 4x8", wide, e_row, 0.5), ("identity 8x8", torch.eye(d), e, 0.0)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m hypir.rsd.theory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name, A, e, sigma in cases():
        u, _ = distil(A, e, sigma, steps=args.steps, seed=args.seed)
        print(f"A = {name}, sigma = {sigma:.2f}, |Ae| = {float((A @ e).norm()):.3f}, raw u {rank1_w2(e, u):.5f}: "
              f"measured W2^2 {rank1_w2(e, minimum_norm(A, u)):.5f}, closed form {closed_form_w2(A, e, sigma):.5f}",
              flush=True)


if __name__ == "__main__":
    main()
