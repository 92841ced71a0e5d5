"""SiD's pieces: the noise levels, the generator loss against its formula (real, complex, NaN-safe),
and a gradient that points the generator at the teacher's law when the fake score is exact."""
import pytest
import torch

from hypir.rsd import theory
from hypir.rsd.edm import sigma_at
from hypir.rsd.sid import generator_loss, sid_loss, sid_sigmas


def test_sid_sigmas_cover_the_schedule_up_to_t_max():
    s = sid_sigmas(100000, torch.Generator().manual_seed(0))
    assert float(s.min()) >= 0.002 - 1e-6 and float(s.max()) <= float(sigma_at(0.2)) + 1e-3
    assert float(sigma_at(0.2)) == pytest.approx(24.4, abs=0.2)
    assert float(s.median()) == pytest.approx(float(sigma_at(0.6)), rel=0.05)  # t uniform on [0, 0.8]
    with pytest.raises(ValueError, match="^t_max"):
        sid_sigmas(4, torch.Generator(), t_max=0.0)


def test_sid_loss_formula_normaliser_and_nan_samples():
    g = torch.Generator().manual_seed(1)
    real, fake, w = (torch.randn(3, 2, 4, 4, generator=g) for _ in range(3))
    fake.requires_grad_(True)
    out = sid_loss(real, fake, w, alpha=1.2)
    norm = (w - real).abs().flatten(1).mean(1)
    want = ((real - fake) * ((real - w) - 1.2 * (real - fake))).flatten(1).mean(1) / norm
    torch.testing.assert_close(out, want)
    # complex inputs compare their real views
    c = [torch.complex(t, t.flip(-1)) for t in (real, fake.detach(), w)]
    torch.testing.assert_close(sid_loss(*c), sid_loss(*(torch.view_as_real(t) for t in c)))
    # a NaN sample contributes 0 and no NaN gradient
    bad = real.clone()
    bad[1, 0, 0, 0] = float("nan")
    out = sid_loss(bad, fake, w)
    assert out[1] == 0 and torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(fake.grad).all() and torch.equal(fake.grad[1], torch.zeros_like(fake.grad[1]))


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("scale,sign", [(0.5, -1), (0.8, -1), (1.3, 1)])
def test_generator_gradient_points_at_the_teacher(scale, sign):
    """Data N(0, e e^T), exact teacher, exact fake score of N(0, u u^T): the loss gradient along e is
    negative below |u| = 1 and positive above (gradient descent moves |u| towards 1)."""
    e = torch.zeros(4)
    e[0] = 1
    teacher = theory.GaussianDenoiser(torch.outer(e, e))
    gen = theory.Rank1Generator(scale * e)
    fake = theory.GaussianDenoiser(lambda: torch.outer(gen.u.detach(), gen.u.detach()))
    g = torch.Generator().manual_seed(0)
    loss = generator_loss(theory.MatrixView(torch.eye(4)), teacher, fake, gen(torch.randn(8192, 4, generator=g)), 0,
                          g).mean()
    grad = torch.autograd.grad(loss, gen.u)[0]
    assert sign * float(grad[0]) > 0


def test_a_noisy_teacher_is_never_queried_below_the_data_noise():
    """An Ambient-Tweedie teacher was trained only at sigma >= sigma_n: the generator step clips there
    (and the clipped levels still vary above it)."""
    asked = []

    def recording(w_t, sigma):
        asked.append(sigma.clone())
        return w_t * 0.5

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 4, generator=g)
    generator_loss(theory.MatrixView(torch.eye(4), sigma_n=0.2), recording, recording, x, 0, g)
    sigma = torch.cat(asked)
    assert float(sigma.min()) == pytest.approx(0.2) and float(sigma.max()) > 10
    assert 0.28 < float((sigma == 0.2).float().mean()) < 0.38  # 33 % of t in [0, 0.8] fall below 0.2
    asked.clear()
    generator_loss(theory.MatrixView(torch.eye(4)), recording, recording, x, 0, g)
    assert float(torch.cat(asked).min()) < 0.01


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="^batch"):
        sid_sigmas(-1, torch.Generator())
    with pytest.raises(ValueError, match="^real: expected a float or complex"):
        sid_loss(torch.zeros(0, 2), torch.zeros(0, 2), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="^real: expected the shape and dtype of w"):
        sid_loss(torch.zeros(1, 2), torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="^alpha"):
        sid_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 2), alpha=float("nan"))
