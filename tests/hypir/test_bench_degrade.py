"""hypir.bench.degrade: the BasicSR-style anchor computes the same degradation as ours (noise
values aside), so the benchmark compares equal work."""
import torch

from hypir.bench.degrade import BASICSR_OPS, basicsr_gaussian_noise, make_batch
from hypir.data.kernels import KernelSpec
from hypir.data.realesrgan import DegradationConfig, StageConfig, conv_filter2d, degrade, usm_sharp, usm_sharp_conv


def test_anchor_equals_ours_without_gaussian_noise_values():
    gt = make_batch(3, 48)
    no_noise = StageConfig(gaussian_noise_prob=1.0, noise_range=(0, 0))
    cfg = DegradationConfig(stage1=no_noise, stage2=StageConfig(kernel=KernelSpec(sigma=(0.2, 1.5)), blur_prob=0.8,
                                                                gaussian_noise_prob=1.0, noise_range=(0, 0)))
    for seed in range(3):
        ours, t1 = degrade(gt, seed, cfg)
        anchor, t2 = degrade(gt, seed, cfg, ops=BASICSR_OPS)
        torch.testing.assert_close(t1, t2, rtol=1e-4, atol=1e-5)
        assert (ours - anchor).abs().max() <= 1 / 255 + 1e-6  # 8-bit rounding may flip a value
        assert (ours != anchor).float().mean() < 0.01


def test_anchor_parts():
    x = make_batch(2, 64)
    torch.testing.assert_close(usm_sharp_conv(x), usm_sharp(x), rtol=1e-4, atol=1e-5)
    import hypir_kernels as hk

    k = torch.rand(2, 21, 21)
    torch.testing.assert_close(conv_filter2d(x, k), hk.filter2d(x, k, padding="reflect"), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(conv_filter2d(x, k[:1]), hk.filter2d(x, k[:1].expand(2, -1, -1), padding="reflect"),
                               rtol=1e-4, atol=1e-5)
    sigma = torch.tensor([0.1, 0.2], dtype=torch.float64)
    y = basicsr_gaussian_noise(torch.zeros(2, 3, 64, 64), sigma, torch.tensor([False, True]), 0)
    assert abs(y[0].std().item() - 0.1) < 0.01 and abs(y[1].std().item() - 0.2) < 0.02
    assert torch.equal(y[1, 0], y[1, 1])
