"""GAN losses (closed forms) and LPIPS (structure, local weight formats, the substitute)."""
import math

import pytest
import torch

from hypir.train.losses import LPIPS, discriminator_loss, generator_loss


def test_bce_with_label_smoothing_closed_form():
    zero = [torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2)]
    # at logit 0, BCE against any target is ln 2 per level; levels summed (released) or averaged
    assert float(discriminator_loss(zero, zero)) == pytest.approx(4 * math.log(2))
    assert float(generator_loss(zero)) == pytest.approx(2 * math.log(2))
    assert float(discriminator_loss(zero, zero, reduction="mean")) == pytest.approx(2 * math.log(2))
    assert float(generator_loss(zero, reduction="mean")) == pytest.approx(math.log(2))
    x = torch.full((1, 1, 3, 3), 2.0)
    sig = 1 / (1 + math.exp(-2.0))
    real = -(0.8 * math.log(sig) + 0.2 * math.log(1 - sig))
    fake = -math.log(1 - sig)
    assert float(discriminator_loss([x], [x])) == pytest.approx(real + fake, rel=1e-6)
    assert float(generator_loss([x], target=0.8)) == pytest.approx(real, rel=1e-6)


def test_levels_sum_or_weigh_the_same():
    small, big = torch.full((1, 1, 1, 1), 3.0), torch.full((1, 1, 8, 8), -1.0)
    assert float(generator_loss([small, big], "hinge")) == pytest.approx(-3.0 + 1.0)
    assert float(generator_loss([small, big], "hinge", reduction="mean")) == pytest.approx((-3.0 + 1.0) / 2)
    with pytest.raises(ValueError, match="reduction"):
        generator_loss([small], reduction="max")


def _released_multilevel_loss(levels, for_real=True, for_G=False, alpha=0.8):
    """vision-aided-gan's ``multilevel_loss(alpha=0.8)`` as HYPIR calls it (``HYPIR/model/D.py``),
    then the trainer's ``.mean()``: maps arrive squeezed ``[B, h, w]`` (mean over h, w per image),
    the pooled level ``[B, 1]``; per-image losses summed over levels."""
    target = alpha if (for_real or for_G) else 0.0
    per_image = 0
    for each in levels:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(each, torch.full_like(each, target), reduction="none")
        if loss.dim() > 2:
            loss = loss.mean([1, 2]).reshape(-1, 1)
        per_image = per_image + loss
    return per_image.mean()


def test_terms_equal_the_released_ones_on_identical_logits():
    """The released head's 4 levels (3 maps of different sizes, the pooled [B, 1]) with random
    logits: our G and D terms equal the release's; the mean reduction is a quarter of it."""
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 1, 32, 32), (3, 1, 16, 16), (3, 1, 8, 8), (3, 1)]
    real = [torch.randn(s, generator=g) * 2 for s in shapes]
    fake = [torch.randn(s, generator=g) * 2 - 1 for s in shapes]
    squeeze = lambda ts: [t.squeeze(1) if t.dim() == 4 else t for t in ts]  # noqa: E731  (D.py's .squeeze(1))
    want_g = _released_multilevel_loss(squeeze(fake), for_G=True)
    want_d = _released_multilevel_loss(squeeze(real), for_real=True) + _released_multilevel_loss(squeeze(fake), for_real=False)
    torch.testing.assert_close(generator_loss(fake), want_g)
    torch.testing.assert_close(discriminator_loss(real, fake), want_d)
    torch.testing.assert_close(generator_loss(fake, reduction="mean"), want_g / 4)


def test_hinge():
    r, f = [torch.tensor([[[[0.5, 2.0]]]])], [torch.tensor([[[[-2.0, 0.0]]]])]
    assert float(discriminator_loss(r, f, "hinge")) == pytest.approx(0.25 + 0.5)
    with pytest.raises(ValueError, match="kind"):
        generator_loss(r, "wgan")


def test_lpips_substitute_is_a_distance():
    lp = LPIPS()
    assert lp.substitute and not any(p.requires_grad for p in lp.parameters())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert torch.allclose(lp(x, x), torch.zeros(2), atol=1e-7)
    slight = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    heavy = (x + 0.5 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert (lp(x, slight) < lp(x, heavy)).all()
    torch.testing.assert_close(lp(x, heavy), lp(heavy, x))
    with pytest.raises(ValueError, match="x, y"):
        lp(x, x[:, :2])


def test_lpips_reads_torchvision_vgg_and_lpips_lin_files(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    vgg = torchvision.models.vgg16(weights=None)
    torch.save(vgg.state_dict(), tmp_path / "vgg16.pth")
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(lin, tmp_path / "lin.pth")
    lp = LPIPS(tmp_path / "vgg16.pth", tmp_path / "lin.pth")
    assert not lp.substitute
    assert torch.equal(lp.features[0].weight, vgg.features[0].weight)
    assert torch.equal(lp.lin3, lin["lin3.model.1.weight"].flatten())
    # reference: the LPIPS formula written out on torchvision's network
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    fx, fy, total = (x - shift) / scale, (y - shift) / scale, 0.0
    for i, layer in enumerate(vgg.features[:30]):
        fx, fy = layer(fx), layer(fy)
        if i in (3, 8, 15, 22, 29):
            k = (3, 8, 15, 22, 29).index(i)
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + torch.nn.functional.conv2d((nx - ny) ** 2, lin[f"lin{k}.model.1.weight"]).mean()
    torch.testing.assert_close(lp(x, y), total.reshape(1), rtol=1e-5, atol=1e-6)
    torch.save({"lin0.model.1.weight": torch.rand(1, 3, 1, 1)}, tmp_path / "badlin.pth")
    with pytest.raises(ValueError, match="loss.lpips_lin"):
        LPIPS(tmp_path / "vgg16.pth", tmp_path / "badlin.pth")
    torch.save({"features.0.weight": torch.rand(2, 2)}, tmp_path / "badvgg.pth")
    with pytest.raises(ValueError, match="loss.lpips_vgg"):
        LPIPS(tmp_path / "badvgg.pth")
