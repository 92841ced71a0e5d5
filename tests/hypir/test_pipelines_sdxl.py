"""HYPIR restoration on an SDXL base (issue 24, part): a diffusers SDXL directory (the real classes,
reduced width: two CLIP text encoders, the added text/time embedding, SDXL's VAE scaling) with the
HYPIR LoRA restores real image files through the same restorer and CLI as SD2; the UNet gets
SDXL's conditioning; merged equals unmerged; seeds reproduce; training on it is refused by name."""
import numpy as np
import pytest
import torch
from PIL import Image

from hypir import Restorer
from hypir.cli import main
from hypir.models.backbones import detect_backbone
from hypir.models.lora import LoraSpec, add_lora, save_checkpoint
from hypir.testing import randomize_lora, tiny_sdxl_components

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdxl")
    components = tiny_sdxl_components(root / "tok", seed=3)
    base = components.save_pretrained(root / "model")
    add_lora(components.unet, LoraSpec(rank=8))
    randomize_lora(components.unet, std=0.05)
    return base, save_checkpoint(components.unet, root / "hypir.safetensors")


def _photo(h=40, w=28, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


def test_the_directory_is_sdxl_and_loads_both_text_encoders(sdxl):
    base, weights = sdxl
    assert detect_backbone(base) == "sdxl"
    r = Restorer.from_pretrained(base, weights, device="cpu")
    c = r.components
    assert c.backbone == "sdxl" and c.text_encoder_2 is not None and c.vae.config.scaling_factor == 0.13025
    cond = r._conditioning("a photo")
    assert cond.text.shape == (1, 77, 2 * 32) and cond.pooled.shape == (1, 32)


def test_the_unet_receives_sdxl_micro_conditioning_for_each_tile(sdxl):
    base, weights = sdxl
    r = Restorer.from_pretrained(base, weights, device="cpu")
    seen = []
    hook = r.components.unet.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args[0].shape, kwargs["added_cond_kwargs"])), with_kwargs=True)
    out = r(_photo(), upscale=2, tile=64, stride=32)
    hook.remove()
    assert out.size == (56, 80)
    calls = [(shape, added) for shape, added in seen if shape[-1] == 8]  # the restoration's 64 px tiles (after the probes)
    assert calls
    for shape, added in calls:
        assert added["time_ids"].tolist() == [[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]] * shape[0]
        assert added["text_embeds"].shape == (shape[0], 32)


def test_merged_equals_unmerged_and_seeds_reproduce(sdxl):
    base, weights = sdxl
    x = _photo(seed=1)
    merged = Restorer.from_pretrained(base, weights, device="cpu")
    unmerged = Restorer.from_pretrained(base, weights, device="cpu", merge=False)
    a, b = np.asarray(merged(x, upscale=2), np.int16), np.asarray(unmerged(x, upscale=2), np.int16)
    assert np.abs(a - b).max() <= 2
    sampled = Restorer.from_pretrained(base, weights, device="cpu", posterior="sample")
    one, two = sampled(x, upscale=2, seed=7), sampled(x, upscale=2, seed=7)
    assert np.array_equal(np.asarray(one), np.asarray(two))
    assert not np.array_equal(np.asarray(one), np.asarray(sampled(x, upscale=2, seed=8)))


def test_cli_restores_files_and_refuses_a_checkpoint_with_wrong_keys(sdxl, tmp_path, capsys):
    base, weights = sdxl
    inputs = tmp_path / "in"
    inputs.mkdir()
    _photo().save(inputs / "a.png")
    _photo(17, 23).convert("L").save(inputs / "b.png")
    assert main(["restore", str(inputs), "-o", str(tmp_path / "out"), "--base-model", str(base), "--weights",
                 str(weights), "--upscale", "2", "--quiet"]) == 0
    assert Image.open(tmp_path / "out" / "a.png").size == (56, 80)
    assert Image.open(tmp_path / "out" / "b.png").size == (46, 34)
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    key = next(iter(state))
    state[key.replace("lora_A", "lora_Z")] = state.pop(key)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    assert main(["restore", str(inputs / "a.png"), "-o", str(tmp_path / "out2"), "--base-model", str(base), "--weights",
                 str(bad), "--quiet"]) == 2
    assert "lora_Z" in capsys.readouterr().err


def test_training_on_an_sdxl_base_is_refused_by_name(sdxl, tmp_path):
    from hypir.config import parse
    from hypir.train import HypirTrainer, TrainConfig

    base, _ = sdxl
    cfg = parse(TrainConfig, {"model": {"base_model": str(base)}, "data": {"generated": 4, "crop": 64, "batch_size": 2},
                              "discriminator": {"backbone": "conv"},
                              "run": {"output_dir": str(tmp_path / "run")}})
    with pytest.raises(ValueError, match="^model.base_model: .* SDXL"):
        HypirTrainer(cfg, progress=False)
