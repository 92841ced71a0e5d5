"""``hypir train`` on the SDXL, SD3 and Flux.1 backbones: each shipped tiny config trains in under
two minutes and its output directory restores real files with ``hypir restore``; the generator's
loss falls on a fixed batch; resuming continues bit for bit; mismatched settings are refused."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hypir.cli import main
from hypir.config import parse
from hypir.models.backbones import detect_backbone
from hypir.models.lora import BACKBONE_TARGETS
from hypir.train import HypirTrainer, TrainConfig

pytest.importorskip("diffusers")
CONFIGS = Path(__file__).parents[2] / "configs"
BACKBONES = ("sdxl", "sd3", "flux")


@pytest.mark.parametrize("backbone", BACKBONES)
def test_tiny_config_trains_in_under_two_minutes_and_restores_files(tmp_path, backbone):
    run = tmp_path / "run"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hypir", "train", "--config", str(CONFIGS / f"hypir-{backbone}-tiny.yaml"),
                           "--set", f"run.output_dir={run}", "--quiet"], capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert seconds < 120, f"the tiny {backbone} config took {seconds:.0f} s (promised: under 2 minutes on the CPU)"
    assert "trained 20 steps" in proc.stderr
    assert detect_backbone(run / "base_model") == backbone

    from hypir.models import read_checkpoint

    state = read_checkpoint(run / "hypir.safetensors")
    assert any(k.startswith("class_embedding.") for k in state)
    adapted = {k.split(".lora_A.")[0].split(".")[-1] for k in state if ".lora_A." in k}
    targets = {t.split(".")[-1] for t in BACKBONE_TARGETS[backbone]}
    assert adapted <= targets and len(adapted) >= (4 if backbone == "sdxl" else 6)
    assert not (run / "released_lora.pth").exists()  # the official enhancer is SD2's

    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray((rng.random((20, 28, 3)) * 255).astype(np.uint8)).save(inputs / "rgb.png")
    Image.fromarray((rng.random((15, 17)) * 255).astype(np.uint8)).save(inputs / "gray.jpg")
    status = main(["restore", str(inputs), "-o", str(tmp_path / "out"), "--base-model", str(run / "base_model"),
                   "--weights", str(run / "hypir.safetensors"), "--upscale", "2", "--quiet"])
    assert status == 0
    assert Image.open(tmp_path / "out" / "rgb.png").size == (56, 40)
    assert Image.open(tmp_path / "out" / "gray.png").size == (34, 30)


def _config(out, backbone, **sections):
    data = {
        "model": {"backbone": backbone, "tiny": {"unet_width": 32, "vae_width": 8, "text_width": 32}, "lora_rank": 4},
        "data": {"generated": 2, "crop": 64, "batch_size": 2, "flip": False},
        "discriminator": {"backbone": "conv", "head_channels": 16, "conv_widths": [8, 16]},
        "optim": {"lr_g": 1e-3, "lr_d": 1e-3},
        "run": {"output_dir": str(out), "steps": 2, "log_every": 1, "checkpoint_every": 0, "ema": 0.9,
                "mixed_precision": "no"},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse(TrainConfig, data)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_generator_loss_falls_on_a_fixed_batch(tmp_path, backbone):
    """MSE only, two images, fresh degradations each step; the random tiny VAE bounds what any latent
    decodes to, so the fall is modest (seen: SDXL -13 %, SD3 -7 %, Flux -33 %); an untrained or
    gradient-less generator stays where it was."""
    trainer = HypirTrainer(_config(tmp_path, backbone, loss={"lpips": 0.0, "gan": 0.0}, run={"steps": 20, "ema": 0.0},
                                   optim={"lr_g": 3e-2}), progress=False)
    batch = next(iter(trainer._loader(0)))
    lq, target, prompts, richness, seed = trainer._prepare_micro(0, 0, batch, pool=False)

    def loss():
        with torch.no_grad():
            return float(F.mse_loss(trainer.generate(lq, prompts, richness, seed).float(), target * 2 - 1))

    before = loss()
    trainer.train()
    after = loss()
    assert after < 0.95 * before, (before, after)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("backbone", BACKBONES)
def test_resume_continues_bit_for_bit(tmp_path, backbone):
    straight = HypirTrainer(_config(tmp_path / "a", backbone, run={"steps": 2}), progress=False)
    straight.train()
    HypirTrainer(_config(tmp_path / "b", backbone, run={"steps": 1}), progress=False).train()
    resumed = HypirTrainer(_config(tmp_path / "b", backbone, run={"steps": 2}), progress=False)
    resumed.train(resume="auto")
    assert resumed.step == 2
    for k, p in straight.g_named.items():
        assert torch.equal(p, resumed.g_named[k]), k
    for k, v in straight.ema.state_dict().items():
        assert torch.equal(v, resumed.ema.state_dict()[k]), k
    for k, v in straight._disc.heads.state_dict().items():
        assert torch.equal(v, resumed._disc.heads.state_dict()[k]), k


def test_mismatched_settings_are_refused(tmp_path):
    from hypir.testing import tiny_backbone_components

    base = tiny_backbone_components("flux", tmp_path / "tok").save_pretrained(tmp_path / "flux")
    cfg = parse(TrainConfig, {"model": {"base_model": str(base), "backbone": "sd3"},
                              "data": {"generated": 2, "crop": 64}, "discriminator": {"backbone": "conv"},
                              "run": {"output_dir": str(tmp_path / "run")}})
    with pytest.raises(ValueError, match="^model.backbone: 'sd3', but model.base_model .* holds a Flux.1 model"):
        HypirTrainer(cfg, progress=False)
    with pytest.raises(ValueError, match="run.export_released: .* SD2 LoRAs only"):
        HypirTrainer(_config(tmp_path / "r", "sd3", run={"export_released": True}), progress=False)
    with pytest.raises(ValueError, match="coeff_t: a flow-matching backbone"):
        _config(tmp_path / "c", "flux", model={"coeff_t": 100})
