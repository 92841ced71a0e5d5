"""EDM pieces: preconditioning equals the paper's formulas, the schedule, and both samplers reach
the right distribution on a Gaussian target whose denoiser is known exactly."""
import math

import pytest
import torch

from hypir.rsd.edm import (EDMPrecond, ambient_tweedie_sample, heun_sample, karras_sigmas, loss_weight, masked_loss_weight,
                           preconditioning, sigma_at, training_sigmas)


def test_preconditioning_formulas():
    for s in (0.002, 0.5, 3.0, 80.0):
        c_skip, c_out, c_in, c_noise = preconditioning(torch.tensor(s, dtype=torch.float64))
        assert float(c_skip) == pytest.approx(0.25 / (s * s + 0.25))
        assert float(c_out) == pytest.approx(s * 0.5 / math.sqrt(s * s + 0.25))
        assert float(c_in) == pytest.approx(1 / math.sqrt(s * s + 0.25))
        assert float(c_noise) == pytest.approx(math.log(s) / 4)
        assert float(loss_weight(torch.tensor(s, dtype=torch.float64))) == pytest.approx((s * s + 0.25) / (0.5 * s) ** 2)
    # unit effective weight: lambda * c_out^2 == 1
    s = torch.logspace(-2, 1.9, 7, dtype=torch.float64)
    torch.testing.assert_close(loss_weight(s) * preconditioning(s)[1] ** 2, torch.ones_like(s))


class _Probe(torch.nn.Module):
    """F(input, c_noise) = first channels of the input + c_noise; records what it saw."""

    def __init__(self, channels):
        super().__init__()
        self.channels, self.seen = channels, None

    def forward(self, inp, c_noise):
        self.seen = (inp.clone(), c_noise.clone())
        return inp[:, :self.channels] + c_noise.view(-1, 1, 1, 1)


def test_precond_wraps_the_network_as_edm_says():
    probe = _Probe(3)
    model = EDMPrecond(probe)
    x, cond = torch.randn(2, 3, 4, 5), torch.ones(2, 1, 4, 5)
    sigma = torch.tensor([0.3, 7.0])
    out = model(x, sigma, cond=cond)
    c_skip, c_out, c_in, c_noise = (c.view(-1, 1, 1, 1) for c in preconditioning(sigma))
    torch.testing.assert_close(probe.seen[0], torch.cat([c_in * x, cond], 1))
    torch.testing.assert_close(probe.seen[1], c_noise.flatten())
    torch.testing.assert_close(out, c_skip * x + c_out * (c_in * x + c_noise))


def test_precond_treats_unseen_pixels_as_infinite_noise():
    probe = _Probe(3)
    model = EDMPrecond(probe)
    x, seen = torch.randn(2, 3, 4, 5), (torch.rand(2, 1, 4, 5) > 0.5).float()
    sigma = torch.tensor([0.01, 3.0])
    out = model(x, sigma, cond=seen, seen=seen)
    c_skip, c_out, c_in, c_noise = (c.view(-1, 1, 1, 1) for c in preconditioning(sigma))
    f = c_in * x + c_noise
    torch.testing.assert_close(out, seen * (c_skip * x + c_out * f) + (1 - seen) * 0.5 * f)
    torch.testing.assert_close(model(x, sigma, seen=torch.ones(2, 3, 4, 5)), model(x, sigma))
    with pytest.raises(ValueError, match=r"^seen: expected a 0/1 \[2, 1 or 3, 4, 5\]"):
        model(x, sigma, seen=seen[:, :, :2])
    # the loss weight is lambda where seen and 1/sigma_data^2 where not
    w = masked_loss_weight(sigma, seen)
    torch.testing.assert_close(w, seen * loss_weight(sigma).view(-1, 1, 1, 1) + (1 - seen) * 4.0)


def test_precond_accepts_a_diffusers_unet_and_checks_inputs():
    from diffusers import UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=2, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8)
    model = EDMPrecond(unet)
    out = model(torch.randn(2, 2, 8, 8), 1.5, cond=torch.ones(2, 1, 8, 8))
    assert out.shape == (2, 2, 8, 8) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="^sigma: expected positive finite"):
        model(torch.randn(2, 2, 8, 8), torch.tensor([1.0, 0.0]), cond=torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"^sigma: expected a number or a \[2\] tensor"):
        model(torch.randn(2, 2, 8, 8), torch.ones(3), cond=torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match="^cond: "):
        model(torch.randn(2, 2, 8, 8), 1.0, cond=torch.ones(2, 1, 4, 8))
    with pytest.raises(ValueError, match="^x: "):
        model(torch.randn(2, 8, 8), 1.0)


def test_schedule():
    s = karras_sigmas(18)
    assert s.shape == (19,) and s[0] == pytest.approx(80.0) and s[-2] == pytest.approx(0.002) and s[-1] == 0
    assert bool((s[:-1] > s[1:]).all())
    assert float(sigma_at(0.0)) == pytest.approx(80.0) and float(sigma_at(1.0)) == pytest.approx(0.002)
    assert float(sigma_at(8 / 17)) == pytest.approx(float(s[8]))
    g = torch.Generator().manual_seed(0)
    log_s = training_sigmas(200_000, g).log()
    assert float(log_s.mean()) == pytest.approx(-1.2, abs=0.01) and float(log_s.std()) == pytest.approx(1.2, abs=0.01)
    with pytest.raises(ValueError, match="^steps"):
        karras_sigmas(0)


# A 2-D Gaussian "image" [B, 1, 1, 2] with the exact denoiser E[x | x + sigma e].
MEAN = torch.tensor([0.3, -0.2], dtype=torch.float64)
COV = torch.tensor([[0.25, 0.1], [0.1, 0.16]], dtype=torch.float64)


def exact_denoiser(x, sigma):
    flat = x.reshape(x.shape[0], 2).double()
    out = []
    for v, s in zip(flat, sigma.double()):
        gain = COV @ torch.linalg.inv(COV + s * s * torch.eye(2, dtype=torch.float64))
        out.append(MEAN + gain @ (v - MEAN))
    return torch.stack(out).view(x.shape).to(x.dtype)


def _vectorised(x, sigma):  # the same, batched (all sigmas equal inside a sampler call)
    s = float(sigma[0])
    gain = COV @ torch.linalg.inv(COV + s * s * torch.eye(2, dtype=torch.float64))
    flat = x.reshape(x.shape[0], 2).double()
    return (MEAN + (flat - MEAN) @ gain.T).view(x.shape).to(x.dtype)


def _moments(samples):
    flat = samples.reshape(samples.shape[0], 2).double()
    return flat.mean(0), torch.cov(flat.T)


def test_vectorised_denoiser_matches_the_loop():
    x = torch.randn(5, 1, 1, 2, dtype=torch.float64)
    torch.testing.assert_close(_vectorised(x, torch.full((5,), 0.7)), exact_denoiser(x, torch.full((5,), 0.7)))


def test_heun_reaches_the_target_mean_and_covariance():
    """Discretisation error shrinks with steps (measured on this target: covariance +11% at 18
    steps, +2% at 40, +0.2% at 100; the schedule is tuned for images, not a 2-D toy)."""
    noise = torch.randn(40_000, 1, 1, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mean, cov = _moments(heun_sample(_vectorised, noise, steps=40))
    torch.testing.assert_close(mean, MEAN, atol=0.01, rtol=0)
    torch.testing.assert_close(cov, COV, atol=0.005, rtol=0.04)
    _, cov18 = _moments(heun_sample(_vectorised, noise, steps=18))
    assert float((cov18 - COV).abs().max()) > float((cov - COV).abs().max())


def test_ambient_tweedie_sampler_truncates_at_the_data_noise():
    """Truncated at the first level below sigma_n: the output is D(x_s, s) for the last level
    s >= sigma_n, whose law is N(m, C (C + s^2)^-1 C)."""
    sigma_n, steps = 0.2, 100  # Euler: first order, so more steps
    noise = torch.randn(40_000, 1, 1, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = ambient_tweedie_sample(_vectorised, noise, sigma_n, steps=steps)
    levels = karras_sigmas(steps).tolist()
    s = next(levels[i] for i in range(steps) if levels[i + 1] < sigma_n)
    want = COV @ torch.linalg.inv(COV + s * s * torch.eye(2, dtype=torch.float64)) @ COV
    mean, cov = _moments(out)
    torch.testing.assert_close(mean, MEAN, atol=0.01, rtol=0)
    torch.testing.assert_close(cov, want, atol=0.005, rtol=0.06)
    # without truncation the Euler chain runs to sigma = 0 and reaches the data law itself
    mean, cov = _moments(ambient_tweedie_sample(_vectorised, noise, sigma_n, steps=steps, truncate=False))
    torch.testing.assert_close(cov, COV, atol=0.005, rtol=0.07)
    assert float((cov - want).abs().max()) > 0.01  # and the two differ: truncation did stop early


def test_masked_loss_weight_names_bad_arguments():
    with pytest.raises(ValueError, match="^sigma: expected a"):
        masked_loss_weight(torch.tensor([0.0, 1.0]), torch.ones(2, 1, 2, 2))
    with pytest.raises(ValueError, match=r"^seen: expected a 0/1 \[2, C, H, W\]"):
        masked_loss_weight(torch.tensor([0.5, 1.0]), torch.ones(3, 1, 2, 2))
