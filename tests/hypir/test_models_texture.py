"""Texture richness: the measure, and the zero-initialised embedding that conditions the UNet."""
import pytest
import torch

from hypir.models.texture import TextureEmbedding, attach_texture_embedding, texture_richness
from hypir.testing import tiny_components


def test_constant_image_has_zero_richness():
    assert texture_richness(torch.full((2, 3, 9, 7), 0.3)).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)


def test_impulse_matches_the_hand_computed_variance():
    # one interior pixel of luma 1 (0..255 units): Laplacian -4 there, +1 at its 4 neighbours,
    # 0 elsewhere; mean 0, so the variance is (16 + 4) / pixels.
    img = torch.zeros(1, 3, 8, 8)
    img[:, :, 3, 4] = 1 / 255
    assert texture_richness(img).item() == pytest.approx(20 / 64, rel=1e-5)
    grey = img[:, :1]  # one channel is read as luma directly
    assert texture_richness(grey).item() == pytest.approx(20 / 64, rel=1e-5)


def test_richer_texture_scores_higher():
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(64, 64), mode="bilinear")
    textured = (smooth + 0.2 * torch.rand(1, 3, 64, 64, generator=g)).clamp(0, 1)
    r = texture_richness(torch.cat([smooth, textured]))
    assert r[1] > 20 * r[0]


@pytest.mark.parametrize("bad", [torch.zeros(3, 8, 8), torch.zeros(1, 2, 8, 8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8)])
def test_bad_images_are_rejected(bad):
    with pytest.raises(ValueError, match="image"):
        texture_richness(bad)


def test_zero_initialised_embedding_leaves_the_unet_unchanged(tmp_path):
    c = tiny_components(tmp_path / "tok")
    z, text = torch.randn(2, 4, 16, 16), torch.randn(2, 77, 32)
    with torch.no_grad():
        before = c.unet(z, 200, text).sample
        emb = attach_texture_embedding(c.unet)
        assert torch.equal(emb(torch.tensor([3.0, 3000.0])), torch.zeros(2, emb.linear_2.out_features))
        assert torch.equal(c.unet(z, 200, text, class_labels=torch.tensor([3.0, 3000.0])).sample, before)
        emb.linear_2.weight.normal_(std=0.05)  # once trained, the value matters
        a = c.unet(z, 200, text, class_labels=torch.tensor([3.0, 3.0])).sample
        b = c.unet(z, 200, text, class_labels=torch.tensor([3000.0, 3000.0])).sample
    assert (a - b).abs().max() > 1e-4


def test_embedding_separates_nearby_values():
    emb = TextureEmbedding(16)
    torch.nn.init.normal_(emb.linear_2.weight)
    out = emb(torch.tensor([100.0, 101.0, 100.0]))
    assert torch.allclose(out[0], out[2], atol=1e-6) and (out[0] - out[1]).abs().max() > 1e-3


def test_empty_image_and_bad_richness_are_rejected():
    with pytest.raises(ValueError, match="^image: empty"):
        texture_richness(torch.rand(1, 3, 0, 4))
    with pytest.raises(ValueError, match="^richness:"):
        TextureEmbedding(8)(torch.rand(2, 3))
