"""HYPIR restoration on the SDXL, SD3 and Flux.1 backbones: a diffusers directory of each (the real
classes at reduced width: SDXL's two CLIPs and added embedding, SD3's three text encoders and
16-channel VAE, Flux's packed latents, RoPE ids and guidance) with a HYPIR LoRA (and texture
embedding) restores real image files through the same restorer and CLI as SD2; SDXL's UNet gets
its conditioning per tile; merged equals unmerged; seeds reproduce; wrong keys are refused."""
import numpy as np
import pytest
import torch
from PIL import Image

from hypir import Restorer
from hypir.cli import main
from hypir.models.backbones import detect_backbone
from hypir.models.lora import save_checkpoint
from hypir.models.texture import attach_texture_embedding
from hypir.testing import tiny_backbone_components, trained_like_unet

pytest.importorskip("diffusers")
BACKBONES = ("sdxl", "sd3", "flux")


@pytest.fixture(scope="module", params=BACKBONES)
def model(request, tmp_path_factory):
    """(backbone, base directory, checkpoint with LoRA and a texture embedding that moves the output)."""
    root = tmp_path_factory.mktemp(request.param)
    components = tiny_backbone_components(request.param, root / "tok", seed=3)
    base = components.save_pretrained(root / "model")
    trained_like_unet(components)
    torch.nn.init.normal_(attach_texture_embedding(components.denoiser).linear_2.weight, std=0.1)
    return request.param, base, save_checkpoint(components.denoiser, root / "hypir.safetensors")


def _photo(h=40, w=28, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


def test_the_directory_loads_as_its_backbone(model):
    backbone, base, weights = model
    assert detect_backbone(base) == backbone
    r = Restorer.from_pretrained(base, weights, device="cpu")
    c = r.components
    assert c.backbone == backbone and r.backbone.name == backbone and r.has_texture_control
    cond = r._conditioning("a photo")
    width = {"sdxl": 64, "sd3": 64, "flux": 32}[backbone]  # SDXL both CLIPs side by side; SD3 T5's width
    assert cond.text.shape[-1] == width and cond.pooled.shape[0] == 1
    expected_vae = {"sdxl": (0.13025, None), "sd3": (1.5305, 0.0609), "flux": (0.3611, 0.1159)}[backbone]
    assert (c.vae.config.scaling_factor, getattr(c.vae.config, "shift_factor", None)) == expected_vae


def test_sdxl_unet_receives_micro_conditioning_for_each_tile(model):
    backbone, base, weights = model
    if backbone != "sdxl":
        pytest.skip("SDXL's added embedding")
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


def test_merged_equals_unmerged_seeds_reproduce_and_controls_act(model):
    _, base, weights = model
    x = _photo(seed=1)
    merged = Restorer.from_pretrained(base, weights, device="cpu")
    unmerged = Restorer.from_pretrained(base, weights, device="cpu", merge=False)
    a, b = np.asarray(merged(x, upscale=2), np.int16), np.asarray(unmerged(x, upscale=2), np.int16)
    assert merged.merged and np.abs(a - b).max() <= 2
    assert np.abs(a - np.asarray(merged(x, upscale=2, texture=5000.0), np.int16)).max() > 2  # the texture embedding acts
    sampled = Restorer.from_pretrained(base, weights, device="cpu", posterior="sample")
    one, two = sampled(x, upscale=2, seed=7, noise=0.5), sampled(x, upscale=2, seed=7, noise=0.5)
    assert np.array_equal(np.asarray(one), np.asarray(two))
    assert not np.array_equal(np.asarray(one), np.asarray(sampled(x, upscale=2, seed=8, noise=0.5)))


def test_tiles_and_text_offload_give_the_same_picture(model):
    """Text encoders kept on the CPU give the same conditioning (the device is the CPU here too, so
    the same picture exactly); explicit tiles run the latent passes tile by tile (random tiny models
    attend globally, so tiles change the picture: only the plan and the range are checked)."""
    _, base, weights = model
    x = torch.rand(3, 48, 40, generator=torch.Generator().manual_seed(2))
    whole = Restorer.from_pretrained(base, weights, device="cpu")(x, upscale=2, tile="auto")
    offloaded = Restorer.from_pretrained(base, weights, device="cpu", offload_text=True)(x, upscale=2, tile="auto")
    assert torch.equal(whole, offloaded)
    tiled = Restorer.from_pretrained(base, weights, device="cpu")
    out = tiled(x, upscale=2, tile=64, stride=32)
    assert tiled.last.plans["unet"].tile == 8 and out.shape == whole.shape and 0 <= out.min() <= out.max() <= 1


def test_sd3_tiles_respect_its_position_embedding(model):
    backbone, base, weights = model
    if backbone != "sd3":
        pytest.skip("SD3's position-embedding limit")
    r = Restorer.from_pretrained(base, weights, device="cpu")
    limit = r.backbone.max_latent  # 32 x patch 2 = 64 latent pixels in the tiny model
    out = r(torch.rand(3, 80, 72), upscale=8)  # 640 x 576 px: 80 x 72 latents > the limit
    assert out.shape == (3, 640, 576) and r.last.plans["unet"].tile <= limit
    with pytest.raises(ValueError, match="position embedding"):
        r(torch.rand(3, 80, 72), upscale=8, tile=(limit + 8) * 8)


def test_cli_restores_files_and_refuses_a_checkpoint_with_wrong_keys(model, tmp_path, capsys):
    _, base, weights = model
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
    key = next(k for k in state if "lora_A" in k)
    state[key.replace("lora_A", "lora_Z")] = state.pop(key)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    assert main(["restore", str(inputs / "a.png"), "-o", str(tmp_path / "out2"), "--base-model", str(base), "--weights",
                 str(bad), "--quiet"]) == 2
    assert "lora_Z" in capsys.readouterr().err


@pytest.mark.gpu
def test_offloaded_parts_live_on_the_cpu_and_give_the_same_picture_on_cuda(model):
    _, base, weights = model
    x = torch.rand(3, 48, 40, generator=torch.Generator().manual_seed(2)).cuda()
    plain = Restorer.from_pretrained(base, weights, device="cuda", dtype="fp32")(x, upscale=2)
    r = Restorer.from_pretrained(base, weights, device="cuda", dtype="fp32", offload_text=True, offload_vae=True)
    out = r(x, upscale=2)
    assert all(p.device.type == "cpu" for m in r.backbone.text_encoders + [r.components.vae] for p in m.parameters())
    assert next(r.components.denoiser.parameters()).device.type == "cuda"
    assert (out - plain).abs().max() < 1e-3


def test_released_preset_pads_to_even_latents(model):
    """The released preset pads to 8 px (SD2's); SD3/Flux need even latents, so 16 px there."""
    _, base, weights = model
    out = Restorer.from_pretrained(base, weights, device="cpu", preset="released")(_photo(31, 29), upscale=2)
    assert out.size == (58, 62)
