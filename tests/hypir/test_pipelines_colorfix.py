"""Wavelet colour fix."""
import torch

from hypir.pipelines.colorfix import wavelet_color_fix, wavelet_decompose


def test_decomposition_is_exact():
    x = torch.rand(2, 3, 37, 53, dtype=torch.float64)
    high, low = wavelet_decompose(x)
    assert torch.allclose(high + low, x, atol=1e-12)
    # five a-trous levels leave little detail in the low band
    assert low.diff(dim=-1).abs().mean() < 0.2 * x.diff(dim=-1).abs().mean()


def test_colour_comes_from_the_style_and_detail_from_the_content():
    g = torch.Generator().manual_seed(0)
    style = torch.rand(1, 3, 40, 40, generator=g, dtype=torch.float64)
    shifted = style + torch.tensor([0.2, -0.1, 0.05], dtype=torch.float64)[None, :, None, None]  # a colour cast
    assert torch.allclose(wavelet_color_fix(shifted, style), style, atol=1e-12)
    content = torch.rand(1, 3, 40, 40, generator=g, dtype=torch.float64)
    fixed = wavelet_color_fix(content, style)
    assert torch.allclose(wavelet_decompose(fixed)[0], wavelet_decompose(content)[0], atol=0.05)
    assert torch.allclose(fixed.mean(dim=(2, 3)), style.mean(dim=(2, 3)), atol=0.02)


def test_bad_inputs_name_the_argument():
    import pytest

    for content, style, name in [(torch.rand(1, 3, 0, 4), torch.rand(1, 3, 0, 4), "content"),
                                 (torch.rand(3, 8, 8), torch.rand(3, 8, 8), "content"),
                                 (torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9), "style")]:
        with pytest.raises(ValueError, match=f"^{name}:"):
            wavelet_color_fix(content, style)
