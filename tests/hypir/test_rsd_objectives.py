"""RSD phase-I objectives: each reads only what its corruption observes, feeds the network what the
paper says, and trains a tiny network (finite losses, weights move)."""
import pytest
import torch

from hypir_kernels import bernoulli_mask, mri_column_mask, mri_further_mask
from hypir_kernels.operators import Blur, MultiCoilMRI
from hypir.rsd.edm import EDMPrecond
from hypir.rsd.objectives import (ambient_inpainting_loss, ambient_tweedie_loss, fourier_ambient_loss, further_mask,
                                  standard_loss)


class Recorder(torch.nn.Module):
    """A denoiser that returns its (noisy) input unchanged and keeps every call's arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, sigma, cond=None, seen=None):
        self.calls.append((x.clone(), sigma.clone(), None if cond is None else cond.clone()))
        self.seen = seen
        return x


def small_net(in_channels, out_channels):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, 16, 3, padding=1), torch.nn.SiLU(),
                               torch.nn.Conv2d(16, out_channels, 3, padding=1))


class TinyF(torch.nn.Module):
    """F(input, c_noise) for tests: convs plus the noise level as a bias."""

    def __init__(self, cin, cout):
        super().__init__()
        self.body = small_net(cin + 1, cout)

    def forward(self, inp, c_noise):
        level = c_noise.view(-1, 1, 1, 1).expand(-1, 1, *inp.shape[-2:])
        return self.body(torch.cat([inp, level], 1))


def _trains(model, loss_fn, steps=4):
    params = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(steps):
        loss = loss_fn(model, torch.Generator().manual_seed(step)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(not torch.equal(a, b) for a, b in zip(params, model.parameters()))
    return losses


def _blurred(batch=4, size=16, seed=0):
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return Blur(2.0, kernel_size=9).A(x)  # the paper's blur task: 9x9, std 2, reflect


def test_standard_loss_is_edm_on_the_corrupted_data():
    y = _blurred()
    rec = Recorder()
    loss = standard_loss(rec, y, torch.Generator().manual_seed(0))
    x_t, sigma, cond = rec.calls[0]
    assert cond is None and loss.shape == (4,)
    # identity denoiser: loss = lambda(s) * mean(noise^2) with noise = x_t - y = s e
    s = sigma.view(-1, 1, 1, 1)
    e = (x_t - y) / s
    torch.testing.assert_close(loss, (sigma**2 + 0.25) / (0.5 * sigma) ** 2 * (s * e).pow(2).flatten(1).mean(1))
    _trains(EDMPrecond(TinyF(3, 3)), lambda m, g: standard_loss(m, y, g))


def test_ambient_tweedie_clips_sigma_and_maps_back():
    y, sigma_n = _blurred(batch=2000, size=4), 0.2
    rec = Recorder()
    loss = ambient_tweedie_loss(rec, y, sigma_n, torch.Generator().manual_seed(0))
    x_t, sigma, _ = rec.calls[0]
    assert float(sigma.min()) == pytest.approx(sigma_n)  # clipped: many draws fall below 0.2
    # the added noise has variance sigma^2 - sigma_n^2 (the data already carries sigma_n)
    added = (x_t - y).flatten(1)
    ratio = added.pow(2).mean(1) / (sigma**2 - sigma_n**2).clamp(min=1e-12)
    big = sigma > 0.5
    assert float(ratio[big].mean()) == pytest.approx(1.0, abs=0.05)
    assert torch.equal(added[~(sigma > sigma_n)], torch.zeros_like(added[~(sigma > sigma_n)]))
    # identity denoiser: the mapped-back prediction is x_t itself
    torch.testing.assert_close(loss, (sigma**2 + 0.25) / (0.5 * sigma) ** 2 * (x_t - y).flatten(1).pow(2).mean(1))
    # sigma_n = 0 is the standard loss, draw for draw
    a = ambient_tweedie_loss(Recorder(), y[:8], 0.0, torch.Generator().manual_seed(5))
    b = standard_loss(Recorder(), y[:8], torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="^sigma_n"):
        ambient_tweedie_loss(rec, y, -1.0, torch.Generator())
    _trains(EDMPrecond(TinyF(3, 3)), lambda m, g: ambient_tweedie_loss(m, y[:4], sigma_n, g))


def test_ambient_inpainting_sees_a_further_masked_input_and_scores_the_observed_pixels():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mask = bernoulli_mask((3, 1, 32, 32), 0.1, seed=7)  # the paper's p = 0.9 missing
    y = mask * x
    rec = Recorder()
    ambient_inpainting_loss(rec, y, mask, delta=0.1, seed=3, generator=torch.Generator().manual_seed(0))
    inp, _, cond = rec.calls[0]
    assert cond.shape == (3, 1, 32, 32)
    assert bool((cond <= mask).all())  # M~ is a subset of M
    removed = float((mask - cond).sum() / mask.sum())
    assert 0.03 < removed < 0.2  # about delta of the observed pixels dropped
    assert torch.equal(inp * (1 - cond), torch.zeros_like(inp))  # the network sees nothing outside M~
    assert torch.equal(rec.seen, cond)  # ... and is preconditioned accordingly
    # identity denoiser: the error is the noise on M~ and y itself on M \ M~, weighted per pixel
    x_t, sigma = inp, rec.calls[0][1]
    lam = ((sigma**2 + 0.25) / (0.5 * sigma) ** 2).view(-1, 1, 1, 1)
    want = ((cond * lam + (1 - cond) * 4) * (mask * (x_t - y)) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(ambient_inpainting_loss(Recorder(), y, mask, 0.1, 3, torch.Generator().manual_seed(0)), want)
    # the loss ignores what the model outputs outside M
    class Garbage(torch.nn.Module):
        def forward(self, x, sigma, cond=None, seen=None):
            return x + (1 - mask) * 1e3

    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    torch.testing.assert_close(ambient_inpainting_loss(Garbage(), y, mask, 0.1, 3, g()),
                               ambient_inpainting_loss(Recorder(), y, mask, 0.1, 3, g()))
    # a new seed draws a new further mask
    rec2 = Recorder()
    ambient_inpainting_loss(rec2, y, mask, 0.1, 4, g())
    assert not torch.equal(rec2.calls[0][2], cond)
    with pytest.raises(ValueError, match="^mask"):
        ambient_inpainting_loss(rec, y, mask[:, :, :8], 0.1, 3, g())
    with pytest.raises(ValueError, match="^delta"):
        further_mask(mask, 1.0, 0)
    _trains(EDMPrecond(TinyF(4, 3)), lambda m, gen: ambient_inpainting_loss(m, y, mask, 0.1, 3, gen))


def test_ambient_inpainting_teaches_unseen_pixels_at_small_noise():
    """Constant images, half the pixels observed: a tiny network learns to fill the pixels it does not
    see from their neighbours at every noise level. With EDM's plain coefficients on unseen pixels
    (``c_out -> 0`` as sigma -> 0) the same network outputs ~0 there at sigma = 0.01 (error ~0.41)."""
    torch.manual_seed(0)
    model = EDMPrecond(TinyF(2, 1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(300):
        g = torch.Generator().manual_seed(step)
        x = (torch.rand(32, 1, 1, 1, generator=g) * 2 - 1).expand(32, 1, 12, 12)
        mask = bernoulli_mask((32, 1, 12, 12), 0.5, seed=1000 + step)
        loss = ambient_inpainting_loss(model, mask * x, mask, 0.2, step, g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.linspace(-0.9, 0.9, 16).view(16, 1, 1, 1).expand(16, 1, 12, 12)
    seen = bernoulli_mask((16, 1, 12, 12), 0.4, seed=5)
    with torch.no_grad():
        x_t = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
        d = model(seen * x_t, 0.01, cond=seen, seen=seen)
    unseen_error = float(((d - x).abs() * (1 - seen)).sum() / (1 - seen).sum())
    assert unseen_error < 0.25


def _mri_batch(batch=2, coils=3, size=16):
    g = torch.Generator().manual_seed(0)
    x = torch.complex(torch.randn(batch, size, size, generator=g), torch.randn(batch, size, size, generator=g))
    maps = torch.complex(torch.randn(batch, coils, size, size, generator=g), torch.randn(batch, coils, size, size, generator=g))
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = mri_column_mask(batch, size, 4, seed=1, center_fraction=0.125)
    further = mri_further_mask(mask, 1, seed=2, center_fraction=0.125)
    return MultiCoilMRI(maps, mask).A(x), maps, mask, further


def test_fourier_ambient_never_reads_unsampled_k_space():
    y, maps, mask, further = _mri_batch()
    model = EDMPrecond(TinyF(3, 2))
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    loss = fourier_ambient_loss(model, y, maps, mask, further, g())
    # fill every column the scanner did not acquire with large values: nothing changes
    filled = torch.where((mask != 0).view(2, 1, 1, -1), y, torch.full_like(y, 1e4 + 1e4j))
    torch.testing.assert_close(fourier_ambient_loss(model, filled, maps, mask, further, g()), loss, rtol=0, atol=0)
    # the network sees only the further-masked columns: changing a column of M \ M~ changes nothing it sees
    rec = Recorder()
    fourier_ambient_loss(rec, y, maps, mask, further, g())
    dropped = ((mask != 0) & (further == 0)).view(2, 1, 1, -1)
    rec2 = Recorder()
    fourier_ambient_loss(rec2, torch.where(dropped, y * 3, y), maps, mask, further, g())
    torch.testing.assert_close(rec.calls[0][0], rec2.calls[0][0], rtol=0, atol=1e-6)
    assert torch.equal(rec.calls[0][2][:, 0, 0, :], further)
    with pytest.raises(ValueError, match="^further: expected a subset"):
        fourier_ambient_loss(model, y, maps, further, mask, g())
    _trains(model, lambda m, gen: fourier_ambient_loss(m, y, maps, mask, further, gen))
