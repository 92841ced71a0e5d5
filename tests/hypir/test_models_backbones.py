"""hypir.models.backbones: a diffusers directory's backbone is recognised, and one this version
cannot run (SDXL, SD3, Flux.1) is refused with that said by the restorer's loader and the CLI."""
import json
import re

import pytest

from hypir.cli import main
from hypir.models.backbones import detect_backbone
from hypir.models.components import load_components


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


@pytest.mark.parametrize("pipeline,name", [("StableDiffusion3Pipeline", "SD3/SD3.5"), ("FluxPipeline", "Flux.1")])
def test_other_backbones_are_refused_by_name(tmp_path, pipeline, name, capsys):
    _write(tmp_path, "model_index.json", {"_class_name": pipeline})
    with pytest.raises(ValueError, match=f"^base_model: .* holds a {re.escape(name)} model"):
        load_components(tmp_path)
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    image, weights = tmp_path / "in.png", tmp_path / "hypir.safetensors"
    Image.new("RGB", (8, 8)).save(image)
    save_file({"down_blocks.0.resnets.0.conv1.lora_A.default.weight": torch.zeros(4, 4, 3, 3)}, str(weights))
    assert main(["restore", str(image), "-o", str(tmp_path / "out"), "--base-model", str(tmp_path),
                 "--weights", str(weights), "--quiet"]) == 2
    assert f"holds a {name} model" in capsys.readouterr().err


def test_an_sdxl_directory_must_hold_its_second_text_encoder(tmp_path):
    _write(tmp_path, "model_index.json", {"_class_name": "StableDiffusionXLPipeline"})
    with pytest.raises(FileNotFoundError, match="text_encoder_2/config.json.*tokenizer_2/"):
        load_components(tmp_path)
