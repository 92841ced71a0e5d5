"""hypir.data.kernels: Real-ESRGAN's random kernels, batched and seeded, against a per-sample
numpy implementation of BasicSR's formulas (matrix inverse of the covariance, scipy-free J1 from
torch only for the sinc)."""
import math

import numpy as np
import pytest
import torch

from hypir.data.kernels import KINDS, KernelSpec, random_kernels


def _basicsr_kernel(kind, k, sx, sy, theta, beta, wc, pad_to):
    """One kernel the way BasicSR builds it: k x k grid, covariance R diag(sx^2, sy^2) R^T inverted."""
    ax = np.arange(-k // 2 + 1.0, k // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    if kind == -1:
        r = np.sqrt(xx ** 2 + yy ** 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            ker = wc * torch.special.bessel_j1(torch.from_numpy(wc * r)).numpy() / (2 * np.pi * r)
        ker[k // 2, k // 2] = wc ** 2 / (4 * np.pi)
    else:
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        inv = np.linalg.inv(rot @ np.diag([sx ** 2, sy ** 2]) @ rot.T)
        xy = np.stack([xx, yy], -1)
        q = np.sum((xy @ inv) * xy, -1)
        name = KINDS[kind]
        ker = 1 / (q ** beta + 1) if name.startswith("plateau") else np.exp(-0.5 * q ** beta)
    ker = ker / ker.sum()
    pad = (pad_to - k) // 2
    return np.pad(ker, pad)


def test_batched_kernels_match_basicsr_formulas_for_every_kind():
    kernels, d = random_kernels(400, seed=7, spec=KernelSpec(sinc_prob=0.15), dtype=torch.float64)
    seen = set(d.kind.tolist())
    assert seen == {-1, 0, 1, 2, 3, 4, 5}, seen  # every family drawn at least once
    for b in range(400):
        ref = _basicsr_kernel(int(d.kind[b]), int(d.size[b]), float(d.sigma_x[b]), float(d.sigma_y[b]),
                              float(d.theta[b]), float(d.beta[b]), float(d.omega_c[b]), 21)
        np.testing.assert_allclose(kernels[b].numpy(), ref, rtol=1e-9, atol=1e-12)


def test_kernels_are_normalised_centred_and_zero_outside_their_size():
    kernels, d = random_kernels(64, seed=3)
    assert kernels.shape == (64, 21, 21) and kernels.dtype == torch.float32
    torch.testing.assert_close(kernels.sum((1, 2)), torch.ones(64), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kernels, kernels.flip(1).flip(2), rtol=1e-5, atol=1e-7)  # point-symmetric
    for b in range(64):
        h = 10 - int(d.size[b]) // 2
        assert kernels[b, :h].abs().sum() == 0 and kernels[b, :, :h].abs().sum() == 0
    iso = d.kind == 0
    assert torch.equal(d.sigma_x[iso], d.sigma_y[iso]) and (d.theta[iso] == 0).all()


def test_same_seed_same_kernels_and_the_draws_are_spread():
    a, da = random_kernels(200, seed=11)
    b, _ = random_kernels(200, seed=11)
    c, _ = random_kernels(200, seed=12)
    assert torch.equal(a, b) and not torch.equal(a, c)
    counts = torch.bincount(da.kind + 1, minlength=7).float() / 200
    assert abs(counts[0] - 0.1) < 0.07  # sinc_prob 0.1
    assert 0.2 < counts[1] < 0.55  # iso: 0.45 of the non-sinc draws
    assert set(da.size.tolist()) <= set(range(7, 22, 2)) and len(set(da.size.tolist())) >= 6
    assert 0.2 <= float(da.sigma_x.min()) and float(da.sigma_x.max()) <= 3.0


def test_beta_is_drawn_half_below_one_half_above_as_released():
    """The release (and BasicSR) draw beta with probability 1/2 in [lo, 1], else in [1, hi]: with
    betag = (0.5, 4) half the generalised kernels have beta < 1 (one uniform over [0.5, 4] gives
    1/7), and with betap = (1, 2) half the plateau kernels have beta exactly 1 (a uniform: never)."""
    n = 4000
    _, d = random_kernels(n, seed=5, spec=KernelSpec(kinds=("generalized_iso",), probs=(1.0,), sinc_prob=0.0))
    below = float((d.beta < 1).double().mean())
    assert abs(below - 0.5) < 0.03, below
    lower = d.beta[d.beta < 1]
    assert 0.5 <= float(lower.min()) and abs(float(lower.mean()) - 0.75) < 0.02  # uniform on [0.5, 1]
    upper = d.beta[d.beta >= 1]
    assert float(upper.max()) <= 4 and abs(float(upper.mean()) - 2.5) < 0.06  # uniform on [1, 4]
    _, d = random_kernels(n, seed=6, spec=KernelSpec(kinds=("plateau_aniso",), probs=(1.0,), sinc_prob=0.0))
    ones = float((d.beta == 1).double().mean())
    assert abs(ones - 0.5) < 0.03, ones
    assert 1 <= float(d.beta.min()) and float(d.beta.max()) <= 2
    _, d = random_kernels(n, seed=7, spec=KernelSpec(kinds=("iso",), probs=(1.0,), sinc_prob=0.0))
    assert bool((d.beta == 1).all())  # plain Gaussians have no shape parameter


def test_kernels_blur_through_filter2d():
    import hypir_kernels as hk

    kernels, _ = random_kernels(4, seed=0)
    x = torch.rand(4, 3, 32, 32)
    y = hk.filter2d(x, kernels, padding="reflect")
    assert y.shape == x.shape and y.var() < x.var()
    torch.testing.assert_close(y.mean((1, 2, 3)), x.mean((1, 2, 3)), rtol=0.05, atol=0.02)


@pytest.mark.parametrize("kwargs,match", [
    (dict(kinds=("box",), probs=(1.0,)), "kinds"), (dict(probs=(1.0,)), "probs"), (dict(sizes=(8,)), "sizes"),
    (dict(sizes=(23,)), "sizes"), (dict(sigma=(0.0, 1.0)), "sigma"), (dict(betag=(2.0, 1.0)), "betag"),
    (dict(sinc_prob=1.5), "sinc_prob"), (dict(pad_to=20, sizes=(7,)), "pad_to"),
    (dict(probs=("a",) * 6), "probs"), (dict(sizes=(True,)), "sizes"), (dict(rotation=(0, float("inf"))), "rotation"),
])
def test_bad_specs_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=f"^{match}"):
        KernelSpec(**kwargs)
    with pytest.raises(ValueError, match="^seed"):
        random_kernels(2, seed=-1)
