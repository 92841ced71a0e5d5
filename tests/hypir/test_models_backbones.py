"""hypir.models.backbones: a diffusers directory's backbone is recognised; each backbone's
conditioning and one step equal what diffusers' own pipelines compute (SDXL, SD3 and Flux.1
``encode_prompt``; the SD3 and Flux pipelines' one Euler step from ``sigma`` to 0 is the flow one
step); the texture embedding on the transformers; bad arguments named."""
import json

import pytest
import torch

from hypir.models.backbones import (TextConditioning, detect_backbone, latent_ids, make_backbone, pack_latents,
                                    unpack_latents)
from hypir.models.components import load_components
from hypir.models.texture import attach_texture_embedding
from hypir.testing import tiny_backbone_components

pytest.importorskip("diffusers")


def _write(path, name, content):
    (path / name).parent.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(json.dumps(content))


@pytest.mark.parametrize("files,expected", [
    ({"model_index.json": {"_class_name": "StableDiffusionPipeline"}}, "sd2"),
    ({"model_index.json": {"_class_name": "StableDiffusionXLPipeline"}}, "sdxl"),
    ({"model_index.json": {"_class_name": "StableDiffusion3Pipeline"}}, "sd3"),
    ({"model_index.json": {"_class_name": "FluxPipeline"}}, "flux"),
    ({"transformer/config.json": {"_class_name": "FluxTransformer2DModel"}}, "flux"),
    ({"transformer/config.json": {"_class_name": "SD3Transformer2DModel"}}, "sd3"),
    ({"unet/config.json": {"_class_name": "UNet2DConditionModel", "addition_embed_type": "text_time"}}, "sdxl"),
    ({"unet/config.json": {"_class_name": "UNet2DConditionModel", "addition_embed_type": None}}, "sd2"),
    ({"unet/config.json": ["not", "a", "dict"]}, None),
    ({}, None),
])
def test_detect_backbone(tmp_path, files, expected):
    for name, content in files.items():
        _write(tmp_path, name, content)
    assert detect_backbone(tmp_path) == expected


def test_an_unparsable_model_index_falls_back_to_the_denoiser(tmp_path):
    (tmp_path / "model_index.json").write_text("{not json")
    _write(tmp_path, "transformer/config.json", {"_class_name": "SD3Transformer2DModel"})
    assert detect_backbone(tmp_path) == "sd3"


def test_an_sdxl_directory_must_hold_its_second_text_encoder(tmp_path):
    _write(tmp_path, "model_index.json", {"_class_name": "StableDiffusionXLPipeline"})
    with pytest.raises(FileNotFoundError, match="text_encoder_2/config.json.*tokenizer_2/"):
        load_components(tmp_path)


def test_an_sd3_directory_names_its_missing_parts_and_t5_is_optional(tmp_path):
    _write(tmp_path, "model_index.json", {"_class_name": "StableDiffusion3Pipeline"})
    with pytest.raises(FileNotFoundError, match="transformer/config.json.*expected a diffusers SD3/SD3.5 directory"):
        load_components(tmp_path)
    components = tiny_backbone_components("sd3", tmp_path / "tok", t5=False)
    base = components.save_pretrained(tmp_path / "model")
    loaded = load_components(base)
    assert loaded.backbone == "sd3" and loaded.text_encoder_3 is None and loaded.tokenizer_3 is None
    cond = make_backbone(loaded).encode_text("a cat")
    # without T5, its 256 states are zeros after CLIP's 77, as diffusers' SD3 pipeline does
    assert cond.text.shape == (1, 77 + 256, 64) and not cond.text[:, 77:].any() and cond.text[:, :77].any()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return {b: tiny_backbone_components(b, root / b, seed=5) for b in ("sdxl", "sd3", "flux")}


def _pipeline(components):
    from diffusers import FluxPipeline, StableDiffusion3Pipeline, StableDiffusionXLPipeline

    c = components
    if c.backbone == "sdxl":
        return StableDiffusionXLPipeline(vae=c.vae, text_encoder=c.text_encoder, text_encoder_2=c.text_encoder_2,
                                         tokenizer=c.tokenizer, tokenizer_2=c.tokenizer_2, unet=c.unet, scheduler=c.scheduler)
    if c.backbone == "sd3":
        return StableDiffusion3Pipeline(transformer=c.transformer, scheduler=c.scheduler, vae=c.vae,
                                        text_encoder=c.text_encoder, tokenizer=c.tokenizer, text_encoder_2=c.text_encoder_2,
                                        tokenizer_2=c.tokenizer_2, text_encoder_3=c.text_encoder_3, tokenizer_3=c.tokenizer_3)
    return FluxPipeline(scheduler=c.scheduler, vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer,
                        text_encoder_2=c.text_encoder_2, tokenizer_2=c.tokenizer_2, transformer=c.transformer)


@pytest.mark.parametrize("backbone", ["sdxl", "sd3", "flux"])
def test_conditioning_equals_the_diffusers_pipelines(tiny, backbone):
    c = tiny[backbone]
    prompt = "a photo of a red car, sharp"
    pipe = _pipeline(c)
    with torch.no_grad():
        ours = make_backbone(c).encode_text(prompt)
        if backbone == "sdxl":
            text, _, pooled, _ = pipe.encode_prompt(prompt, device="cpu", do_classifier_free_guidance=False)
        elif backbone == "sd3":  # our T5 length: min(256, the tokenizer's model_max_length), 32 here
            text, _, pooled, _ = pipe.encode_prompt(prompt, None, None, device="cpu", do_classifier_free_guidance=False,
                                                    max_sequence_length=c.tokenizer_3.model_max_length)
        else:
            text, pooled, _ = pipe.encode_prompt(prompt, device="cpu", max_sequence_length=c.tokenizer_2.model_max_length)
    assert ours.text.shape == text.shape and ours.pooled.shape == pooled.shape
    assert (ours.text - text).abs().max() == 0 and (ours.pooled - pooled).abs().max() == 0


@pytest.mark.parametrize("backbone", ["sd3", "flux"])
def test_flow_one_step_equals_one_euler_step_of_the_diffusers_pipeline(tiny, backbone):
    """The pipeline from ``z_s = (1 - s) y`` with ``sigmas=[s]`` takes one Euler step to 0: ``z_s - s v``."""
    c = tiny[backbone]
    b = make_backbone(c, model_t=300, coeff_t=300)
    y = torch.randn(2, 16, 8, 12, generator=torch.Generator().manual_seed(0))
    cond = b.encode_text("a house").expand(2)
    with torch.no_grad():
        ours = b(c.transformer, y, cond)
        z_s = 0.7 * y
        kw = dict(prompt_embeds=cond.text, pooled_prompt_embeds=cond.pooled, sigmas=[0.3], num_inference_steps=1,
                  height=64, width=96, output_type="latent")
        if backbone == "sd3":
            ref = _pipeline(c)(latents=z_s, guidance_scale=1.0, **kw).images
        else:
            ref = unpack_latents(_pipeline(c)(latents=pack_latents(z_s), guidance_scale=3.5, **kw).images, 8, 12)
    assert ours.shape == y.shape and torch.allclose(ours, ref, atol=2e-5, rtol=1e-4), (ours - ref).abs().max()


def test_flux_packing_and_ids_are_the_pipelines():
    from diffusers import FluxPipeline

    z = torch.randn(2, 16, 6, 10)
    packed = pack_latents(z)
    assert torch.equal(packed, FluxPipeline._pack_latents(z, 2, 16, 6, 10))
    assert torch.equal(unpack_latents(packed, 6, 10), z)
    assert torch.equal(latent_ids(6, 10), FluxPipeline._prepare_latent_image_ids(2, 3, 5, "cpu", torch.float32))


@pytest.mark.parametrize("backbone", ["sd3", "flux"])
def test_latent_space_uses_the_vaes_shift_and_scale(tiny, backbone):
    c = tiny[backbone]
    b = make_backbone(c)
    z = torch.randn(1, 16, 4, 4)
    sf, shift = c.vae.config.scaling_factor, c.vae.config.shift_factor
    assert shift != 0 and torch.allclose(b.to_latent(z), (z - shift) * sf)
    assert torch.allclose(b.from_latent(b.to_latent(z)), z, atol=1e-6)


@pytest.mark.parametrize("backbone", ["sd3", "flux"])
def test_texture_embedding_on_a_transformer_is_added_to_its_time_embedding(tmp_path, backbone):
    c = tiny_backbone_components(backbone, tmp_path, seed=1)
    b = make_backbone(c)
    y, cond = torch.randn(1, 16, 8, 8), b.encode_text("")
    with torch.no_grad():
        plain = b(c.transformer, y, cond)
        emb = attach_texture_embedding(c.transformer)
        assert torch.equal(b(c.transformer, y, cond, torch.tensor([50.0])), plain)  # zero-initialised: no change
        torch.nn.init.normal_(emb.linear_2.weight, std=0.5)
        low, high = b(c.transformer, y, cond, torch.tensor([5.0])), b(c.transformer, y, cond, torch.tensor([5000.0]))
    assert not torch.allclose(low, high) and not torch.allclose(low, plain)
    assert any(k.startswith("class_embedding.") for k in c.transformer.state_dict())
    with pytest.raises(ValueError, match="class_labels"):
        b(c.transformer, y, cond)


def test_bad_arguments_are_named(tiny):
    with pytest.raises(ValueError, match="coeff_t"):
        make_backbone(tiny["sd3"], model_t=200, coeff_t=100)
    with pytest.raises(ValueError, match="model_t"):
        make_backbone(tiny["flux"], model_t=0, coeff_t=0)
    with pytest.raises(ValueError, match="guidance"):
        make_backbone(tiny["flux"], guidance=float("nan"))
    cat = TextConditioning.cat([TextConditioning(torch.zeros(1, 3, 2), torch.ones(1, 4))] * 2)
    assert cat.text.shape == (2, 3, 2) and cat.pooled.shape == (2, 4)


def test_latents_of_the_wrong_form_are_named(tiny):
    flux, sd3, sdxl = (make_backbone(tiny[b]) for b in ("flux", "sd3", "sdxl"))
    cond = flux.encode_text("")
    for bad in (torch.zeros(1, 4, 8, 8), torch.zeros(1, 16, 7, 8), torch.zeros(0, 16, 8, 8), torch.zeros(1, 16, 8),
                torch.zeros(1, 16, 8, 8, dtype=torch.long)):
        with pytest.raises(ValueError, match="^z: expected"):
            flux(tiny["flux"].transformer, bad, cond)
    with pytest.raises(ValueError, match="^z: expected"):
        sd3(tiny["sd3"].transformer, torch.zeros(1, 4, 8, 8), sd3.encode_text(""))
    with pytest.raises(ValueError, match=r"^z: expected a floating \[B, 4, h, w\]"):
        sdxl(tiny["sdxl"].unet, torch.zeros(1, 16, 8, 8), sdxl.encode_text(""))
    with pytest.raises(ValueError, match="^z: expected even"):
        pack_latents(torch.zeros(1, 16, 5, 8))
    with pytest.raises(ValueError, match="^x: expected packed latents"):
        unpack_latents(torch.zeros(1, 15, 64), 8, 8)
    with pytest.raises(ValueError, match="^h, w: expected even"):
        latent_ids(0, 4)
    with pytest.raises(ValueError, match="^components: expected"):
        make_backbone(object())
