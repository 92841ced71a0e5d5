"""hypir.data.realesrgan: the two-stage degradation (shapes, 8-bit output, reproducibility from
the seed, stages actually applied) and USM sharpening."""
import pytest
import torch

import hypir_kernels as hk
from hypir.data.realesrgan import DegradationConfig, degrade, usm_sharp


def _gt(b=4, size=96, seed=0):
    x = torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))
    return hk.gaussian_blur(x, 1.0)


def test_shapes_eight_bit_output_and_reproducibility():
    gt = _gt()
    lq, target = degrade(gt, seed=3)
    assert lq.shape == (4, 3, 24, 24) and target.shape == gt.shape
    assert lq.min() >= 0 and lq.max() <= 1
    torch.testing.assert_close(lq * 255, (lq * 255).round(), rtol=0, atol=1e-4)  # on the 8-bit grid
    assert torch.equal(degrade(gt, seed=3)[0], lq)
    assert not torch.equal(degrade(gt, seed=4)[0], lq)


def test_degradation_is_strong_and_varied():
    gt = _gt(8)
    clean = torch.nn.functional.interpolate(gt, size=(24, 24), mode="area")
    errors = torch.stack([((degrade(gt, s)[0] - clean) ** 2).mean((1, 2, 3)) for s in range(6)])
    assert (errors > 1e-5).all()  # every sample degraded
    assert errors.std() > 0.1 * errors.mean()  # and not all alike


def test_usm_sharpens_edges_and_keeps_flat_regions():
    flat = torch.full((1, 3, 64, 64), 0.4)
    torch.testing.assert_close(usm_sharp(flat), flat)
    step = torch.zeros(1, 3, 64, 64)
    step[..., 32:] = 0.8
    step = hk.gaussian_blur(step, 2.0)
    sharp = usm_sharp(step)
    grad = lambda t: (t[..., 1:] - t[..., :-1]).abs().max()  # noqa: E731
    assert grad(sharp) > grad(step)
    assert sharp.min() >= 0 and sharp.max() <= 1
    assert torch.equal(degrade(_gt(), 1, DegradationConfig(usm=False))[1], _gt())


def test_bad_input_and_config():
    with pytest.raises(ValueError, match="^gt: height and width"):
        degrade(torch.rand(1, 3, 30, 32), 0)
    with pytest.raises(ValueError, match="^gt: expected 3"):
        degrade(torch.rand(1, 1, 32, 32), 0)
    with pytest.raises(ValueError, match="^final_sinc_prob"):
        DegradationConfig(final_sinc_prob=1.5)
    with pytest.raises(ValueError, match="^scale"):
        DegradationConfig(scale=0)


def test_stage_options_are_checked_and_used():
    from hypir.data.realesrgan import StageConfig

    with pytest.raises(ValueError, match="^blur_prob"):
        StageConfig(blur_prob=-0.1)
    gt = hk.gaussian_blur(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)), 4.0)  # smooth:
    # the stage-2 resize mode (area, bilinear or bicubic, drawn) then barely matters. No blur, no resize, no noise, near-lossless JPEG, no final sinc: only the final x4 resize and
    # 8-bit rounding remain, so lq is close to a plain area/bilinear/bicubic downscale.
    quiet = StageConfig(blur_prob=0.0, resize_prob=(0, 0, 1), gaussian_noise_prob=1.0, noise_range=(0, 0),
                        gray_noise_prob=0.0, jpeg_range=(100, 100))
    lq, _ = degrade(gt, 0, DegradationConfig(stage1=quiet, stage2=quiet, final_sinc_prob=0.0, usm=False))
    ref = torch.nn.functional.interpolate(gt, size=(16, 16), mode="area")
    assert ((lq - ref) ** 2).mean() < 3e-4  # measured 5.6e-5; the default degradation gives 1.3e-3..3.9e-3 here


@pytest.mark.parametrize("kwargs,match", [
    (dict(resize_prob=(-1, 0, 0)), "resize_prob"), (dict(resize_range=(1.5, 2.0)), "resize_range"),
    (dict(jpeg_range=(0, 200)), "jpeg_range"), (dict(noise_range="ab"), "noise_range"),
    (dict(poisson_scale_range=(float("nan"), 1)), "poisson_scale_range"), (dict(gray_noise_prob=True), "gray_noise_prob"),
])
def test_stage_config_rejects_bad_options_when_built(kwargs, match):
    from hypir.data.realesrgan import StageConfig

    with pytest.raises(ValueError, match=f"^{match}"):
        StageConfig(**kwargs)


def test_non_finite_or_wrong_dtype_input_is_named():
    gt = torch.rand(1, 3, 16, 16)
    gt[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="^gt: contains NaN"):
        degrade(gt, 0)
    with pytest.raises(ValueError, match="^img: expected dtype"):
        usm_sharp(torch.zeros(1, 3, 8, 8, dtype=torch.int64))
