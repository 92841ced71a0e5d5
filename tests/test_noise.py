"""hypir_kernels.add_noise: seeded Philox Gaussian noise — backends agree, the moments of a normal,
independent of the masks drawn from the same seed, seeds/offsets, complex inputs, gradient,
bad input."""
import math

import pytest
import torch

import hypir_kernels as hk
from hypir_kernels import use_backend
from hypir_kernels.testing import runnable_backends


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_backends_agree(dtype):
    x = torch.randn(3, 2, 17, 23).to(dtype)
    sigma = torch.tensor([0.1, 1.0, 3.0])
    with use_backend("reference"):
        ref = hk.add_noise(x, sigma, 2**40 + 9, offsets=[4, 5, 6])
    backends = runnable_backends("add_noise")
    assert backends
    for name in backends:
        with use_backend(name):
            out = hk.add_noise(x, sigma, 2**40 + 9, offsets=[4, 5, 6])
        # float32 transcendentals round differently in C++ and torch: a few ulps of the noise
        tol = {torch.float16: 4e-3, torch.bfloat16: 3e-2}.get(dtype, 1e-5)
        torch.testing.assert_close(out, ref, rtol=tol, atol=tol * 3, msg=name)


def test_moments_of_a_standard_normal():
    z = hk.add_noise(torch.zeros(16, 1, 256, 256), 1.0, 11).flatten().double()
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)
    assert abs((z**3).mean().item()) < 5 * math.sqrt(15 / n)
    assert abs((z**4).mean().item() - 3) < 5 * math.sqrt(96 / n)
    assert abs((z.abs() < 1).double().mean().item() - 0.682689) < 0.005
    assert abs((z.abs() < 2).double().mean().item() - 0.954500) < 0.003


def test_per_sample_sigma_seed_and_offsets():
    x = torch.zeros(3, 1, 64, 64)
    y = hk.add_noise(x, torch.tensor([0.5, 0.0, 2.0]), 3)
    assert abs(y[0].std().item() - 0.5) < 0.03 and not y[1].any() and abs(y[2].std().item() - 2.0) < 0.1
    assert torch.equal(y, hk.add_noise(x, torch.tensor([0.5, 0.0, 2.0]), 3))
    assert not torch.equal(y, hk.add_noise(x, torch.tensor([0.5, 0.0, 2.0]), 4))
    assert torch.equal(hk.add_noise(x[:1], 2.0, 3, offsets=[2]), y[2:3])  # position in the batch does not matter


def test_independent_of_the_mask_from_the_same_seed():
    shape = (8, 1, 128, 128)
    keep = hk.bernoulli_mask(shape, 0.5, 7).bool()
    z = hk.add_noise(torch.zeros(shape), 1.0, 7)
    # if noise reused the mask's Philox words, |z| would differ strongly between kept and dropped
    assert abs(z[keep].abs().mean().item() - z[~keep].abs().mean().item()) < 0.02


def test_complex_and_gradient():
    c = hk.add_noise(torch.zeros(2, 4096, dtype=torch.complex64), 1.0, 3)
    assert abs(c.real.std().item() - 1) < 0.05 and abs(c.imag.std().item() - 1) < 0.05
    assert abs(torch.corrcoef(torch.stack([c.real.flatten(), c.imag.flatten()]))[0, 1].item()) < 0.05
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(x)
    hk.add_noise(x, 0.3, 1).backward(g)
    assert torch.equal(x.grad, g)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(sigma=-1.0), "sigma"),
        (dict(sigma=torch.ones(3)), "sigma"),
        (dict(sigma=float("nan")), "sigma"),
        (dict(sigma="1"), "sigma"),
        (dict(seed=-2), "seed"),
        (dict(x=torch.zeros(2, 3, dtype=torch.int64)), "x: expected dtype"),
        (dict(offsets=[1]), "offsets"),
        (dict(sigma=1e39), "sigma: 1e\\+39 overflows"),  # beyond float32: would turn the sample into inf
        (dict(sigma=torch.tensor([1.0, 1e300], dtype=torch.float64)), "sigma: 1e\\+300 overflows"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(x=torch.zeros(2, 3), sigma=1.0, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hk.add_noise(args.pop("x"), args.pop("sigma"), args.pop("seed"), **args)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    x = torch.randn(4, 3, 33, 65)
    cpu = hk.add_noise(x, torch.tensor([0.1, 0.2, 0.3, 0.4]), 5)
    gpu = hk.add_noise(x.cuda(), torch.tensor([0.1, 0.2, 0.3, 0.4]).cuda(), 5)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [2**63, 2**64 - 1])
def test_high_seeds_work_and_backends_agree(seed):
    x = torch.zeros(2, 3, 5, 4)
    ours = hk.add_noise(x, 1.0, seed)
    with hk.use_backend("reference"):
        assert torch.allclose(ours, hk.add_noise(x, 1.0, seed), atol=1e-5)
    for bad in (2**64, -3, 2.0):
        with pytest.raises(ValueError, match="^seed:"):
            hk.add_noise(x, 1.0, bad)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_float64_sigma_is_not_rounded_to_float32(backend):
    """A float64 sample gets the float64 sigma it was given (float32 would make these two equal)."""
    x = torch.zeros(2, 64, dtype=torch.float64)
    with hk.use_backend(backend):
        a = hk.add_noise(x, 1.0, 3)
        b = hk.add_noise(x, 1.0 + 1e-12, 3)
        c = hk.add_noise(x, torch.tensor([1e39, 2.0], dtype=torch.float64), 3)
    assert not torch.equal(a, b)
    torch.testing.assert_close(b, a * (1.0 + 1e-12), rtol=1e-15, atol=0)
    torch.testing.assert_close(c, a * torch.tensor([[1e39], [2.0]], dtype=torch.float64), rtol=1e-15, atol=0)
