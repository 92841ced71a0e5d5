"""``hypir train`` as a user runs it: the shipped tiny config trains and exports weights that
``hypir restore`` accepts; bad configs are refused with the key named."""
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hypir.cli import main

TINY = Path(__file__).parents[2] / "configs" / "hypir-tiny.yaml"


def test_tiny_config_trains_resumes_and_restores(tmp_path):
    run = tmp_path / "run"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hypir", "train", "--config", str(TINY), "--set",
                           f"run.output_dir={run}", "--quiet"], capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert seconds < 120, f"the tiny config took {seconds:.0f} s (promised: under 2 minutes on the CPU)"
    assert "trained 20 steps" in proc.stderr
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-00000010.png", "step-00000020.png"]
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step-00000010", "step-00000020"]

    # Resuming a finished run does nothing more; asking for more steps continues from step 20.
    status = main(["train", "--config", str(TINY), "--set", f"run.output_dir={run}", "--set", "run.steps=21",
                   "--resume", "auto", "--quiet"])
    assert status == 0
    assert (run / "checkpoints" / "step-00000021").is_dir()

    img = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((20, 28, 3)) * 255).astype(np.uint8)).save(img)
    status = main(["restore", str(img), "-o", str(tmp_path / "out"), "--base-model", str(run / "base_model"),
                   "--weights", str(run / "hypir.safetensors"), "--upscale", "2", "--quiet"])
    assert status == 0 and Image.open(tmp_path / "out" / "in.png").size == (56, 40)


def test_bad_config_is_refused_naming_the_key(tmp_path, capsys):
    assert main(["train", "--config", str(TINY), "--set", "optim.lr_g=-1", "--quiet"]) == 2
    assert "optim.lr_g: expected a positive number" in capsys.readouterr().err
    assert main(["train", "--config", str(TINY), "--set", "run.colour=1", "--quiet"]) == 2
    assert "run.colour: unknown key" in capsys.readouterr().err
    assert main(["train", "--config", str(TINY), "--set", "novalue", "--quiet"]) == 2
    assert "--set: expected KEY=VALUE" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_tiny_config_trains_under_bf16_autocast_on_the_cpu(tmp_path):
    """``run.mixed_precision: bf16`` on the CPU (what ``auto`` picks on CPUs with native bf16): the
    fused LoRA ops, the spectral-normed discriminator and the losses run under autocast; fp32
    weights train and every logged loss is finite. Its own process: accelerate keeps one
    mixed-precision setting per process."""
    import json
    import math

    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "hypir", "train", "--config", str(TINY), "--set",
                           f"run.output_dir={run}", "--set", "run.steps=3", "--set", "run.log_every=1",
                           "--set", "run.mixed_precision=bf16", "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [v for r in records for k, v in r.items() if k.startswith("loss")]
    assert len(records) == 3 and losses and all(math.isfinite(v) for v in losses)
