"""SD2 components from a local diffusers directory: loading, and errors that name what is missing."""
import shutil

import pytest
import torch

from hypir.models.sd2 import check_model_dir, load_components
from hypir.testing import tiny_components


def test_directory_round_trip_gives_the_same_model(tmp_path):
    built = tiny_components(tmp_path / "tok", seed=5)
    built.save_pretrained(tmp_path / "model")
    loaded = load_components(tmp_path / "model")
    z = torch.randn(1, 4, 16, 16)
    ids = loaded.tokenizer("a photo", padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert torch.equal(ids, built.tokenizer("a photo", padding="max_length", max_length=77, return_tensors="pt").input_ids)
    with torch.no_grad():
        text = built.text_encoder(ids)[0]
        assert torch.equal(loaded.text_encoder(ids)[0], text)
        assert torch.equal(loaded.unet(z, 200, text).sample, built.unet(z, 200, text).sample)
        assert torch.equal(loaded.vae.decode(z).sample, built.vae.decode(z).sample)
    assert torch.equal(loaded.scheduler.alphas_cumprod, built.scheduler.alphas_cumprod)
    assert loaded.vae_scale == 8 and loaded.unet_align == 8


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="base_model: .*nowhere.* is not a directory"):
        check_model_dir(tmp_path / "nowhere")


@pytest.mark.parametrize("remove", ["unet/config.json", "scheduler", "tokenizer"])
def test_missing_component_is_named(model_dir, tmp_path, remove):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    target = copy / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    component = remove.split("/")[0]
    with pytest.raises(FileNotFoundError, match=f"lacks .*{component}/"):
        load_components(copy)
