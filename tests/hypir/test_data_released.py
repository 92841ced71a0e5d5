"""The released training degradation (``DegradationConfig(preset="released")``) against the HYPIR
release's own code: the whole pipeline against outputs of the release stored once
(``released_degradation_expected.py``), and each of its choices with a case a wrong
implementation gets wrong (JPEG: ``test_data_jpeg.py``; beta: ``test_data_kernels.py``; the pool:
``test_data_pool.py``)."""
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hypir.data import DegradationConfig, degrade
from hypir.data.degrade import gaussian_noise, poisson_noise

sys.path.insert(0, str(Path(__file__).parent))
from released_degradation_expected import CASES, STORED, case_images, image_checksum, released_config  # noqa: E402


def _stored():
    from safetensors import safe_open

    with safe_open(str(STORED), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_released_preset_is_the_releases_pipeline():
    """Every draw the same (noise included): the release's batch transform's LQ to 1/255 (a
    rounding tie at most), its sharpened GT to float noise; the "ours" preset misses that bar by far."""
    (stored, meta), cfg = _stored(), released_config()
    worst = []
    for seed, b, h, w in CASES:
        gt = case_images(seed, b, h, w)
        now, then = (tuple(map(float, c.split(","))) for c in (image_checksum(gt), meta[f"{seed}/gt"]))
        assert now == pytest.approx(then, rel=1e-6), "the test images changed: regenerate the stored outputs"
        release_lq = stored[f"{seed}/lq"].float() / 255
        lq, target = degrade(gt, seed, cfg)
        assert lq.shape == (b, 3, h, w)
        d = (lq - release_lq).abs()
        assert float(d.max()) <= 1 / 255 + 1e-6 and float(d.mean()) < 0.01 / 255, (seed, float(d.max()) * 255)
        if f"{seed}/hq" in stored:
            torch.testing.assert_close(target, stored[f"{seed}/hq"], rtol=0, atol=1e-5)
        ours = degrade(gt, seed, replace(cfg, preset="ours"))[0]
        ours = F.interpolate(ours, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
        worst.append(float((ours - release_lq).abs().max()))
    assert min(worst) > 20 / 255, worst


def test_released_rounds_after_the_resize_back_ours_before():
    gt = case_images(9, 2, 64, 64)
    lq, _ = degrade(gt, 3, DegradationConfig(preset="released"))
    assert lq.shape == (2, 3, 64, 64)
    assert torch.equal(lq * 255, (lq * 255).round())  # 8-bit steps at the ground truth's size
    small, _ = degrade(gt, 3, DegradationConfig(preset="ours"))
    assert small.shape == (2, 3, 16, 16) and torch.equal(small * 255, (small * 255).round())
    back = F.interpolate(small, size=(64, 64), mode="bicubic", align_corners=False)
    assert not torch.equal(back * 255, (back * 255).round())  # the trainer's resize back is not re-quantised


def test_released_grey_gaussian_noise_is_one_field_for_the_batch():
    x = torch.zeros(4, 3, 32, 32)
    sigma = torch.tensor([0.1, 0.2, 0.05, 0.1], dtype=torch.float64)
    gray = torch.tensor([True, True, True, False])
    y = gaussian_noise(x, sigma, gray, seed=4, shared_gray=True)
    field = y[:3, 0] / sigma[:3, None, None].float()
    torch.testing.assert_close(field[0], field[1])
    torch.testing.assert_close(field[0], field[2])
    assert torch.equal(y[0, 0], y[0, 2])  # shared by the channels too
    assert not torch.equal(y[3, 0], y[3, 1])  # colour samples keep their own noise
    own = gaussian_noise(x, sigma, gray, seed=4)  # ours: a field per sample
    assert not torch.allclose(own[0, 0] / 0.1, own[1, 0] / 0.2)


def test_released_poisson_grey_uses_torchvisions_luma_before_rounding():
    """The release: ``rgb_to_grayscale`` (0.2989, 0.587, 0.114) of the unrounded image, then
    rounded; ours: 0.299 of the 8-bit-rounded image. A red level where the two recipes round to
    different grey levels tells them apart."""
    red = torch.arange(256, dtype=torch.float64) + 0.45
    ours_level, released_level = (0.299 * red.round()).round(), (0.2989 * red).round()
    split = int(torch.nonzero(ours_level != released_level)[0])
    x = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    x[:, 0] = red[split] / 255
    scale, gray = torch.ones(1, dtype=torch.float64), torch.tensor([True])
    g = torch.Generator().manual_seed(7)
    imgq = (x * 255).round() / 255
    torch.poisson(imgq * 2, generator=g)  # the colour draw comes first (2 distinct values -> 2 levels)
    luma = released_level[split] / 255
    grey = torch.poisson(torch.full((1, 1, 4, 4), float(luma), dtype=torch.float64), generator=g) - luma  # 1 level
    out = poisson_noise(x, scale, gray, seed=7, released_luma=True)
    assert torch.equal(out, x + grey.expand(1, 3, 4, 4))
    assert not torch.equal(poisson_noise(x, scale, gray, seed=7), out)


def test_released_preset_options_are_checked():
    with pytest.raises(ValueError, match="^preset: expected one of"):
        DegradationConfig(preset="official")
    with pytest.raises(ValueError, match=r"^stage2.jpeg_range: the released JPEG needs qualities below 100"):
        DegradationConfig(preset="released", stage2=replace(DegradationConfig().stage2, jpeg_range=(30, 100)))
    with pytest.raises(ValueError, match="^queue_size"):
        DegradationConfig(queue_size=-1)
    assert DegradationConfig(preset="released").pool_size == 256 and DegradationConfig().pool_size == 0
    assert DegradationConfig(preset="released", queue_size=0).pool_size == 0


@pytest.mark.parametrize("preset", ["released", "ours"])
def test_both_presets_degrade_as_strongly(preset):
    """PSNR(LQ, GT) of the two presets over the same draws: the same strength of degradation
    (their differences are in the kind of artefact, not in how much)."""
    gt = case_images(11, 4, 64, 64)
    psnrs = []
    for seed in range(6):
        lq, target = degrade(gt, seed, DegradationConfig(preset=preset))
        if lq.shape != target.shape:
            lq = F.interpolate(lq, size=target.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        mse = ((lq - target) ** 2).mean((1, 2, 3))
        psnrs += (10 * torch.log10(1 / mse)).tolist()
    mean = sum(psnrs) / len(psnrs)
    assert 15 < mean < 30 and all(math.isfinite(p) for p in psnrs), (preset, mean)


def test_released_ops_check_their_inputs_and_take_images_smaller_than_the_kernel():
    import hypir_kernels as hk
    from hypir.data import PairPool
    from hypir.data.kernels import split_beta
    from hypir.data.realesrgan import conv_filter2d, usm_sharp_conv

    x = torch.rand(2, 3, 16, 16)
    for args, match in [((x, torch.rand(3, 5, 5)), "kernels: expected"), ((x, torch.rand(2, 4, 4)), "kernels: expected"),
                        ((x[0], torch.rand(1, 5, 5)), "x: expected 4 dims"), ((x, torch.rand(2, 5, 5).double()), "kernels")]:
        with pytest.raises(ValueError, match=f"^{match}"):
            conv_filter2d(*args)
    with pytest.raises(ValueError, match="^img"):
        usm_sharp_conv(torch.zeros(1, 3, 64, 64, dtype=torch.int64))
    assert conv_filter2d(torch.rand(0, 3, 16, 16), torch.rand(0, 5, 5)).shape == (0, 3, 16, 16)
    # A side not longer than the radius: the release's reflect pad raises; ours folds as hk.filter2d.
    small, k = torch.rand(2, 3, 9, 12), torch.rand(2, 21, 21)
    torch.testing.assert_close(conv_filter2d(small, k), hk.filter2d(small, k, padding="reflect"))
    assert usm_sharp_conv(torch.rand(1, 3, 20, 20)).shape == (1, 3, 20, 20)
    assert degrade(torch.rand(0, 3, 64, 64), 0, DegradationConfig(preset="released"))[0].shape == (0, 3, 64, 64)
    with pytest.raises(ValueError, match="^record: expected a dict"):
        degrade(torch.rand(1, 3, 64, 64), 0, record=[])
    with pytest.raises(ValueError, match="^gt: expected at least one pair"):
        PairPool(4).exchange(torch.zeros(0, 3, 4, 4), torch.zeros(0, 3, 2, 2), [], 0)
    with pytest.raises(ValueError, match="^beta_range"):
        split_beta((2.0, 1.0), 3, torch.Generator())
    b = split_beta((1.5, 2.0), 1000, torch.Generator().manual_seed(0))  # a range without 1: plain uniform
    assert 1.5 <= float(b.min()) and float(b.max()) <= 2.0
