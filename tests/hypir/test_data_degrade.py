"""hypir.data.degrade: the Real-ESRGAN stages built so far (random-kernel blur, Gaussian noise)."""
import pytest
import torch

from hypir.data.degrade import blur, gaussian_noise, random_gaussian_noise
from hypir.data.kernels import random_kernels


def test_blur_applies_each_samples_own_kernel():
    x = torch.rand(3, 3, 24, 24)
    y = blur(x, seed=5)
    kernels, _ = random_kernels(3, 5)
    for b in range(3):  # per sample, the grouped-conv way BasicSR does it
        xp = torch.nn.functional.pad(x[b:b + 1], (10, 10, 10, 10), mode="reflect")
        ref = torch.nn.functional.conv2d(xp.transpose(0, 1), kernels[b][None, None]).transpose(0, 1)
        torch.testing.assert_close(y[b:b + 1], ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(blur(x, seed=5), y) and not torch.equal(blur(x, seed=6), y)


def test_gaussian_noise_colour_and_grey():
    x = torch.zeros(4, 3, 64, 64)
    sigma = torch.tensor([0.1, 0.2, 0.1, 0.0], dtype=torch.float64)
    gray = torch.tensor([False, True, True, False])
    y = gaussian_noise(x, sigma, gray, seed=9)
    for b in range(3):
        assert abs(y[b].std().item() - sigma[b].item()) < 0.01 * 3
    assert torch.equal(y[1, 0], y[1, 1]) and torch.equal(y[1, 1], y[1, 2])  # grey: shared by channels
    assert not torch.equal(y[0, 0], y[0, 1])  # colour: independent channels
    assert torch.equal(y[3], x[3])  # sigma 0
    # a sample's noise depends on (seed, its index), not on the other samples' settings
    y2 = gaussian_noise(x, sigma, torch.tensor([False, True, False, False]), seed=9)
    assert torch.equal(y2[:2], y[:2]) and not torch.equal(y2[2], y[2])


def test_random_gaussian_noise_draws_from_the_seed():
    x = torch.rand(64, 3, 8, 8)
    a, sa, ga = random_gaussian_noise(x, seed=1)
    b, sb, gb = random_gaussian_noise(x, seed=1)
    assert torch.equal(a, b) and torch.equal(sa, sb) and torch.equal(ga, gb)
    assert (sa >= 1 / 255).all() and (sa <= 30 / 255).all() and 0.15 < ga.float().mean() < 0.65
    c, _, _ = random_gaussian_noise(x, seed=2)
    assert not torch.equal(a, c)


def test_bad_arguments_are_named():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="^sigma, gray"):
        gaussian_noise(x, torch.ones(3, dtype=torch.float64), torch.zeros(2, dtype=torch.bool), 0)
    with pytest.raises(ValueError, match="^gray"):
        gaussian_noise(x, torch.ones(2, dtype=torch.float64), torch.zeros(2), 0)
    with pytest.raises(ValueError, match="^gray_prob"):
        random_gaussian_noise(x, 0, gray_prob=2)
    with pytest.raises(ValueError, match="^seed"):
        blur(x, seed=-1)
    with pytest.raises(ValueError, match="^x"):
        blur(torch.zeros(3, 4, 4), seed=0)


def test_random_resize_one_draw_per_batch():
    from hypir.data.degrade import random_resize

    x = torch.rand(2, 3, 64, 64)
    seen = set()
    for s in range(40):
        y, scale, mode = random_resize(x, s)
        assert y.shape[-1] == int(64 * scale) or scale == 1.0
        assert 0.15 <= scale <= 1.5 and mode in ("area", "bilinear", "bicubic")
        seen.add("up" if scale > 1 else "down" if scale < 1 else "keep")
        assert random_resize(x, s)[1:] == (scale, mode)
    assert seen == {"up", "down", "keep"}
    with pytest.raises(ValueError, match="^resize_range"):
        random_resize(x, 0, resize_range=(1.5, 2.0))
    with pytest.raises(ValueError, match="^modes"):
        random_resize(x, 0, modes=("nearest",))


def _basicsr_poisson(img, scale, gray, generator):
    """BasicSR's add_poisson_noise_pt, step by step (same generator order: colour then grey)."""
    import math as m

    b = img.shape[0]
    imgq = torch.clamp((img * 255.0).round(), 0, 255) / 255.0
    vals = torch.tensor([2 ** m.ceil(m.log2(len(torch.unique(imgq[i])))) for i in range(b)], dtype=img.dtype).view(b, 1, 1, 1)
    noise = torch.poisson(imgq * vals, generator=generator) / vals - imgq
    g = (0.299 * imgq[:, 0:1] + 0.587 * imgq[:, 1:2] + 0.114 * imgq[:, 2:3])
    g = torch.clamp((g * 255.0).round(), 0, 255) / 255.0
    vg = torch.tensor([2 ** m.ceil(m.log2(len(torch.unique(g[i])))) for i in range(b)], dtype=img.dtype).view(b, 1, 1, 1)
    noise_g = (torch.poisson(g * vg, generator=generator) / vg - g).expand(b, 3, *img.shape[2:])
    gw = gray.view(b, 1, 1, 1).to(img.dtype)
    return img + (noise * (1 - gw) + noise_g * gw) * scale.view(b, 1, 1, 1)


def test_poisson_noise_matches_basicsr():
    from hypir.data.degrade import poisson_noise

    x = torch.rand(3, 3, 20, 24, dtype=torch.float64)
    scale = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    gray = torch.tensor([False, True, False])
    ours = poisson_noise(x, scale, gray, seed=3)
    ref = _basicsr_poisson(x, scale, gray, torch.Generator().manual_seed(3))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    d = ours - x
    torch.testing.assert_close(d[1, 0], d[1, 1], rtol=0, atol=1e-12)  # grey noise shared by the channels
    with pytest.raises(ValueError, match="^scale, gray"):
        poisson_noise(x, scale[:2], gray, 0)


def test_random_poisson_noise_draws_from_the_seed():
    from hypir.data.degrade import random_poisson_noise

    x = torch.rand(8, 3, 16, 16)
    a, sa, ga = random_poisson_noise(x, seed=5)
    b, sb, gb = random_poisson_noise(x, seed=5)
    assert torch.equal(a, b) and torch.equal(sa, sb) and torch.equal(ga, gb)
    assert (sa >= 0.05).all() and (sa <= 3).all() and not torch.equal(a, x)


def test_poisson_noise_rejects_non_finite_pixels():
    from hypir.data.degrade import poisson_noise

    x = torch.rand(1, 3, 4, 4)
    x[0, 1, 2, 2] = float("inf")
    with pytest.raises(ValueError, match="^x: contains NaN or Inf"):
        poisson_noise(x, torch.ones(1), torch.zeros(1, dtype=torch.bool), 0)
    from hypir.data.degrade import resize

    with pytest.raises(ValueError, match="^mode: expected one of"):
        resize(torch.zeros(1, 3, 8, 8), "nearest", scale=0.5)
