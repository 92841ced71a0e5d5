"""SD2 components from a local diffusers directory: loading, and errors that name what is missing."""
import shutil

import pytest
import torch

from hypir.models.components import check_model_dir, load_components
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


def _perturbed_vae(model_dir, seed=1):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(model_dir / "vae", local_files_only=True)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return vae


def test_encoder_file_replaces_the_encoder_only(model_dir, tmp_path):
    from hypir.models.sd2 import ENCODER_PREFIXES, load_encoder, save_encoder

    trained = _perturbed_vae(model_dir)
    path = save_encoder(trained, tmp_path / "encoder.safetensors")
    from safetensors.torch import load_file

    keys = set(load_file(path))
    assert keys and all(k.startswith(ENCODER_PREFIXES) for k in keys)
    assert any(k.startswith("quant_conv.") for k in keys)

    vae = load_components(model_dir).vae
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    load_encoder(vae, path)
    after, want = vae.state_dict(), trained.state_dict()
    for k in after:
        if k.startswith(ENCODER_PREFIXES):
            assert torch.equal(after[k], want[k]), k
        else:  # decoder, post_quant_conv: untouched
            assert torch.equal(after[k], before[k]), k


def test_encoder_file_that_does_not_fit_is_refused(model_dir, checkpoint, tmp_path):
    from hypir.models.sd2 import load_encoder

    vae = load_components(model_dir).vae
    with pytest.raises(ValueError, match=r"^encoder: .*: expected the VAE encoder of a stage-1 `hypir train` run for this model; found missing keys: \d+ \(encoder\."):
        load_encoder(vae, checkpoint["safetensors"])  # a LoRA checkpoint, not an encoder
    with pytest.raises(FileNotFoundError, match="^encoder: "):
        load_encoder(vae, tmp_path / "none.safetensors")
