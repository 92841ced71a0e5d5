"""Tiny SD2-architecture models on disk (a real diffusers directory) and HYPIR checkpoints, built
once per session (a few seconds)."""
import pytest
import torch

from hypir.models import save_checkpoint
from hypir.models.lora import LoraSpec
from hypir.testing import tiny_components, trained_like_unet


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A diffusers SD2.1-base layout with tiny random weights (no LoRA)."""
    root = tmp_path_factory.mktemp("sd2")
    tiny_components(root / "tokenizer-src").save_pretrained(root / "model")
    return root / "model"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A rank-8 HYPIR checkpoint with non-zero LoRA weights, as .safetensors and .pth."""
    root = tmp_path_factory.mktemp("ckpt")
    components = trained_like_unet(tiny_components(root / "tok"), LoraSpec(rank=8))
    return {
        "safetensors": save_checkpoint(components.unet, root / "hypir.safetensors"),
        "pth": save_checkpoint(components.unet, root / "hypir.pth"),
    }


@pytest.fixture(scope="session")
def texture_checkpoint(tmp_path_factory):
    """A checkpoint that also holds a trained-looking (non-zero) texture embedding."""
    from hypir.models.texture import attach_texture_embedding

    root = tmp_path_factory.mktemp("ckpt-tex")
    components = trained_like_unet(tiny_components(root / "tok"), LoraSpec(rank=8))
    emb = attach_texture_embedding(components.unet)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        emb.linear_2.weight.copy_(torch.randn(emb.linear_2.weight.shape, generator=g) * 0.05)
    return save_checkpoint(components.unet, root / "hypir-texture.safetensors")


@pytest.fixture(scope="session")
def restorer(model_dir, checkpoint):
    from hypir import Restorer

    return Restorer.from_pretrained(model_dir, checkpoint["safetensors"], device="cpu")




@pytest.fixture(scope="session")
def digit_features():
    """A digit feature network for FID at 16 px (300 steps, ~7 s) and its held-out accuracy."""
    from hypir.metrics.features import train_digit_features

    return train_digit_features(size=16, steps=300, batch=64, progress=False)
