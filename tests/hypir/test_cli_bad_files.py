"""Every file the command line reads, given a bad one (issue 28): truncated, damaged, another
format, a pickle carrying code, the wrong keys. Each exits 2 with one line on stderr naming the
file, what was expected and what was found; no traceback; the code in a pickle never runs."""
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hypir.cli import main

TINY_RSD = Path(__file__).parents[2] / "configs" / "rsd-blur-tiny.yaml"
TINY_HYPIR = Path(__file__).parents[2] / "configs" / "hypir-tiny.yaml"


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling it would create the marker file
        return (open, (self.marker, "w"))


def _bad_files(folder: Path, good: Path | None = None) -> dict[str, Path]:
    """name -> a bad file: truncated copies of ``good`` (when given) and files of the wrong kind."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = {}
    if good is not None:
        data = good.read_bytes()
        bad["truncated"] = folder / f"trunc{good.suffix}"
        bad["truncated"].write_bytes(data[:1000] if len(data) > 1000 else data[:-1])
    bad["pickle_zip_code"] = folder / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _Payload(folder / "MARKER")}, bad["pickle_zip_code"])
    bad["pickle_code"] = folder / "evil-plain.pt"
    bad["pickle_code"].write_bytes(pickle.dumps({"x": _Payload(folder / "MARKER")}))
    bad["text"] = folder / "notes.safetensors"
    bad["text"].write_text("these are not weights\n")
    bad["empty"] = folder / "empty.pth"
    bad["empty"].write_bytes(b"")
    bad["wrong_keys"] = folder / "other.pt"  # a valid state dict of another model
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad["wrong_keys"])
    return bad


def _one_named_line(capsys, path: Path, what: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith(f"hypir: {what}") and str(path) in line and "Traceback" not in line, line
    return line


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.fromarray((np.random.default_rng(0).random((12, 16, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("flag", ["--weights", "--encoder"])
def test_restore_weights_and_encoder(tmp_path, capsys, model_dir, checkpoint, image, flag):
    bad = _bad_files(tmp_path / "bad", checkpoint["safetensors"])
    for kind, path in bad.items():
        weights = str(path) if flag == "--weights" else str(checkpoint["safetensors"])
        extra = ["--encoder", str(path)] if flag == "--encoder" else []
        status = main(["restore", str(image), "-o", str(tmp_path / "out"), "--base-model", str(model_dir),
                       "--weights", weights, *extra, "--quiet"])
        assert status == 2, kind
        line = _one_named_line(capsys, path, flag.lstrip("-") + ": ")
        if kind == "truncated":
            assert "truncated safetensors file" in line
        if kind.startswith("pickle"):
            assert "refused, nothing in it was run" in line
        if kind == "wrong_keys":
            assert "missing keys" in line or "expected one LoRA rank" in line
    assert not (tmp_path / "bad" / "MARKER").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_restore_reads_a_pickled_state_dict_by_content(tmp_path, capsys, model_dir, checkpoint, image):
    """A good checkpoint saved with torch.save but named .safetensors (or the reverse) loads."""
    misnamed = tmp_path / "hypir.safetensors"
    shutil.copy(checkpoint["pth"], misnamed)
    assert main(["restore", str(image), "-o", str(tmp_path / "out"), "--base-model", str(model_dir),
                 "--weights", str(misnamed), "--upscale", "1", "--quiet"]) == 0


def test_restore_base_model_with_a_truncated_part(tmp_path, capsys, model_dir, checkpoint, image):
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    weights = next((broken / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:5000])
    assert main(["restore", str(image), "-o", str(tmp_path / "out"), "--base-model", str(broken),
                 "--weights", str(checkpoint["safetensors"]), "--quiet"]) == 2
    line = _one_named_line(capsys, weights, "base_model: ")
    assert "truncated safetensors file" in line


def test_rsd_sample_checkpoint(tmp_path, capsys):
    bad = _bad_files(tmp_path / "bad")
    for kind, path in bad.items():
        assert main(["rsd", "sample", "--checkpoint", str(path), "-o", str(tmp_path / "g.png"), "--n", "1"]) == 2, kind
        _one_named_line(capsys, path, "checkpoint: ")
    assert not (tmp_path / "bad" / "MARKER").exists() and not (tmp_path / "g.png").exists()


def test_rsd_pretrain_resume_from_a_damaged_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["rsd", "pretrain", "--config", str(TINY_RSD), "--set", f"run.output_dir={run}", "--set", "run.steps=2",
              "--set", "run.sample_every=0", "--set", "run.checkpoint_every=1", "--set", "optim.batch_size=4", "--quiet"]
    assert main(common) == 0
    capsys.readouterr()
    ckpt = run / "checkpoints" / "step-00000002"
    for name, damage in (("tensors.safetensors", lambda b: b[: len(b) // 2]), ("state.json", lambda b: b"{not json"),
                         ("optimizers.pt", lambda b: pickle.dumps({"x": _Payload(tmp_path / "MARKER")}))):
        damaged = tmp_path / f"damaged-{name}"
        shutil.copytree(ckpt, damaged)
        (damaged / name).write_bytes(damage((damaged / name).read_bytes()))
        assert main(common + ["--set", "run.steps=3", "--resume", str(damaged)]) == 2, name
        _one_named_line(capsys, damaged / name, "resume: ")
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize("key", ["loss.lpips_lin", "loss.lpips_vgg"])
def test_hypir_train_loss_weights(tmp_path, capsys, key):
    bad = _bad_files(tmp_path / "bad")
    for kind, path in bad.items():
        status = main(["train", "--config", str(TINY_HYPIR), "--set", f"run.output_dir={tmp_path / 'run'}",
                       "--set", f"{key}={path}", "--quiet"])
        assert status == 2, kind
        _one_named_line(capsys, path, f"{key}: ")
    assert not (tmp_path / "bad" / "MARKER").exists()


def test_a_config_typo_names_the_nearest_key(capsys):
    assert main(["train", "--config", str(TINY_HYPIR), "--set", "run.stpes=3", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hypir: run.stpes: unknown key; did you mean 'run.steps'?") and "\n" not in err
