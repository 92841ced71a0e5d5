"""The HYPIR trainer's config: the shipped YAML files, the paper's defaults, bad values named."""
from pathlib import Path

import pytest

from hypir.data.realesrgan import DegradationConfig
from hypir.train.config import TrainConfig, load_config

CONFIGS = Path(__file__).parents[2] / "configs"


def test_sd21_config_lists_the_paper_defaults():
    cfg = load_config(CONFIGS / "hypir-sd21.yaml")
    assert cfg.degradation == DegradationConfig(preset="released", queue_size=256, ops="released")
    assert cfg.degradation.pool_size % cfg.data.batch_size == 0
    assert (cfg.model.lora_rank, cfg.model.model_t, cfg.model.coeff_t) == (256, 200, 200)
    assert (cfg.loss.mse, cfg.loss.lpips, cfg.loss.gan) == (1.0, 5.0, 0.5)
    assert (cfg.loss.real_label, cfg.loss.fake_label, cfg.loss.generator_label) == (0.8, 0.0, 0.8)
    assert (cfg.optim.lr_g, cfg.optim.lr_d, cfg.optim.grad_clip, cfg.run.ema) == (1e-5, 1e-5, 1.0, 0.999)
    assert cfg.data.crop == 512
    # the released training choices (HYPIR/model/D.py, vision-aided-gan multilevel_loss, trainer/base.py)
    assert (cfg.discriminator.backbone, cfg.discriminator.head, cfg.discriminator.head_channels) == ("timm/convnext_xxlarge", "released", 512)
    assert (cfg.loss.gan_reduction, cfg.run.schedule) == ("sum", "released")


@pytest.mark.parametrize("backbone,crop", [("sdxl", 512), ("sd3", 1024), ("flux", 1024)])
def test_backbone_configs_list_the_papers_recipe(backbone, crop):
    """Paper §5.3: rank 64, losses 1 / 5 / 0.5, AdamW 1e-5, EMA 0.999; SDXL at 512 px, SD3 and Flux at
    1024; every other key as the SD2 config (one file each lists every key)."""
    cfg, sd2 = load_config(CONFIGS / f"hypir-{backbone}.yaml"), load_config(CONFIGS / "hypir-sd21.yaml")
    assert (cfg.model.backbone, cfg.model.lora_rank, cfg.data.crop) == (backbone, 64, crop)
    assert (cfg.loss.mse, cfg.loss.lpips, cfg.loss.gan, cfg.optim.lr_g, cfg.optim.lr_d, cfg.run.ema) == (1.0, 5.0, 0.5, 1e-5, 1e-5, 0.999)
    assert cfg.degradation.pool_size % cfg.data.batch_size == 0
    assert (cfg.discriminator, cfg.loss) == (sd2.discriminator, sd2.loss)
    keys = lambda path: {line.split(":")[0].strip() for line in path.read_text().splitlines() if ":" in line and not line.lstrip().startswith("#")}
    assert keys(CONFIGS / "hypir-sd21.yaml") <= keys(CONFIGS / f"hypir-{backbone}.yaml")


def test_tiny_config_loads():
    cfg = load_config(CONFIGS / "hypir-tiny.yaml")
    assert cfg.model.tiny is not None and cfg.discriminator.backbone == "conv" and cfg.run.steps == 20


def test_partial_stage_keeps_its_stage_defaults(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: {tiny: {}}\ndata: {generated: 4, crop: 64}\ndiscriminator: {backbone: conv}\n"
                 "degradation: {stage2: {blur_prob: 0.5}}\n")
    cfg = load_config(f)
    assert cfg.degradation.stage2.blur_prob == 0.5
    assert cfg.degradation.stage2.noise_range == DegradationConfig().stage2.noise_range != DegradationConfig().stage1.noise_range


BASE = "model: {tiny: {}}\ndata: {generated: 4, crop: 64}\ndiscriminator: {backbone: conv}\n"


def test_pool_size_must_divide_into_micro_batches(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: {tiny: {}}\ndata: {generated: 4, crop: 64, batch_size: 6}\ndiscriminator: {backbone: conv}\n"
                 "degradation: {preset: released}\n")
    with pytest.raises(ValueError, match=r"^degradation.queue_size: 256 is not a multiple of data.batch_size=6"):
        load_config(f)


@pytest.mark.parametrize("extra, message", [
    ("run: {stepz: 3}", r"^run\.stepz: unknown key"),
    ("run: {schedule: alternate}", r"^run\.schedule"),
    ("loss: {gan_reduction: max}", r"^loss\.gan_reduction"),
    ("discriminator: {backbone: conv, head: patch}", r"^discriminator\.head"),
    ("run: {steps: 0}", r"^run\.steps: expected >= 1, got 0"),
    ("optim: {lr_g: -1}", r"^optim\.lr_g: expected a positive number"),
    ("optim: {betas: [0.9, 1.5]}", r"^optim\.betas"),
    ("loss: {gan_loss: wgan}", r"^loss\.gan_loss: expected one of 'bce', 'hinge'"),
    ("run: {mixed_precision: fp8}", r"^run\.mixed_precision"),
    ("run: {export: weights.bin}", r"^run\.export"),
    ("degradation: {stage1: {blur_prob: 2}}", r"^degradation\.stage1\.blur_prob"),
    ("degradation: {stage1: {kernel: {sigma: [0, 1]}}}", r"^degradation\.stage1\.kernel\.sigma"),
    ("degradation: {scale: 3}", r"^data\.crop: 64 is not a multiple of degradation\.scale=3"),
    ("model: {lora_rank: 0}", r"^model\.lora_rank: expected >= 1"),
    ("stage: decoder", r"^stage: expected one of 'restore', 'encoder'"),
    ("loss: {encoder_target: both}", r"^loss\.encoder_target: expected one of 'initial', 'shared'"),
    ("stage: encoder\nrun: {export: encoder.pth}", r"^run\.export: stage 1 writes a \.safetensors encoder"),
])
def test_bad_values_name_the_key(tmp_path, extra, message):
    f = tmp_path / "c.yaml"
    text = BASE
    section = extra.split(":")[0]
    if section + ":" in BASE:  # merge into the existing section
        import yaml

        data = yaml.safe_load(BASE)
        data[section].update(yaml.safe_load(extra)[section])
        text = yaml.safe_dump(data)
    else:
        text = BASE + extra + "\n"
    f.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(f)


@pytest.mark.parametrize("text, message", [
    ("model: {}\ndata: {generated: 4, crop: 64}\ndiscriminator: {backbone: conv}\n", r"^model\.base_model: give exactly one"),
    ("model: {tiny: {}}\ndata: {crop: 64}\ndiscriminator: {backbone: conv}\n", r"^data\.source: give exactly one"),
    ("model: {tiny: {}}\ndata: {generated: 4, crop: 64}\n",
     r"^discriminator\.weights: backbone convnext_large needs a local weights file"),
    ("data: {generated: 4}\n", r"^model: required"),
])
def test_required_choices(tmp_path, text, message):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(f)


def test_overrides():
    cfg = load_config(CONFIGS / "hypir-tiny.yaml", {"run.steps": 3, "optim.lr_g": 0.5})
    assert cfg.run.steps == 3 and cfg.optim.lr_g == 0.5
    assert isinstance(cfg, TrainConfig)


def test_encoder_stage_needs_no_discriminator_weights(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("stage: encoder\nmodel: {tiny: {}}\ndata: {generated: 4, crop: 64}\n")
    cfg = load_config(f)
    assert cfg.stage == "encoder" and cfg.discriminator.backbone == "convnext_large"
    assert load_config(CONFIGS / "hypir-sd21.yaml").stage == "restore"
