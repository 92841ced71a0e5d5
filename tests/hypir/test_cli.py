"""``hypir restore`` end to end on generated files of odd sizes and many formats."""
import subprocess
import sys

import numpy as np
import torch
import pytest
from PIL import Image

from hypir.cli import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((21, 33, 3)) * 255).astype(np.uint8)).save(d / "rgb.jpg")
    Image.fromarray((rng.random((17, 19)) * 255).astype(np.uint8), "L").save(d / "grey.png")
    Image.fromarray((rng.random((15, 22, 4)) * 255).astype(np.uint8), "RGBA").save(d / "rgba.webp")
    Image.fromarray((rng.random((16, 13)) * 65535).astype(np.uint16)).save(d / "g16.png")
    Image.fromarray((rng.random((12, 20, 3)) * 255).astype(np.uint8)).save(d / "t.tiff")
    (d / "broken.png").write_text("not an image")
    return d


def _args(model_dir, checkpoint, *rest):
    return ["restore", "--base-model", str(model_dir), "--weights", str(checkpoint["safetensors"]), "--quiet", *rest]


def test_restores_every_readable_file_and_reports_the_rest(inputs, model_dir, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(_args(model_dir, checkpoint, str(inputs), "-o", str(out), "--upscale", "2"))
    assert status == 1  # broken.png failed
    err = capsys.readouterr().err
    assert "failed" in err and "broken.png" in err and "restored 5 of 6" in err
    expected = {"rgb.png": ("RGB", (66, 42)), "grey.png": ("L", (38, 34)), "rgba.png": ("RGBA", (44, 30)),
                "g16.png": ("I;16", (26, 32)), "t.png": ("RGB", (40, 24))}
    got = {p.name: (Image.open(p).mode, Image.open(p).size) for p in out.iterdir()}
    assert got == expected


def test_single_file_fixed_tiles_prompt_dir_and_controls(inputs, model_dir, checkpoint, tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "rgb.txt").write_text("a red car\n")
    out = tmp_path / "out"
    args = _args(model_dir, checkpoint, str(inputs / "rgb.jpg"), "-o", str(out), "--upscale", "3", "--tile", "64",
                 "--stride", "32", "--prompt-dir", str(prompts), "--noise", "0.2", "--seed", "7", "--texture", "300",
                 "--device", "cpu", "--dtype", "fp32", "--no-merge", "--max-memory", "2")
    assert main(args) == 0
    first = np.asarray(Image.open(out / "rgb.png"))
    assert first.shape == (63, 99, 3)
    assert main(args) == 0
    assert np.array_equal(first, np.asarray(Image.open(out / "rgb.png")))  # same seed, same result
    args[args.index("7")] = "8"
    assert main(args) == 0
    assert not np.array_equal(first, np.asarray(Image.open(out / "rgb.png")))


@pytest.mark.parametrize("bad", [["--tile", "big"], ["--upscale", "0"], ["--noise", "-1"], ["--seed", "x"],
                                 ["--texture", "-3"], ["--dtype", "fp8"]])
def test_bad_flags_exit_2(inputs, model_dir, checkpoint, tmp_path, bad):
    with pytest.raises(SystemExit) as e:
        main(_args(model_dir, checkpoint, str(inputs), "-o", str(tmp_path), *bad))
    assert e.value.code == 2


def test_missing_model_or_input_exit_2_with_a_message(inputs, model_dir, checkpoint, tmp_path, capsys):
    assert main(["restore", str(inputs), "-o", str(tmp_path), "--base-model", str(tmp_path / "nope"),
                 "--weights", str(checkpoint["pth"])]) == 2
    assert "base_model" in capsys.readouterr().err
    assert main(_args(model_dir, checkpoint, str(tmp_path / "missing.png"), "-o", str(tmp_path))) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["restore", str(inputs), "-o", str(tmp_path), "--base-model", str(model_dir),
                 "--weights", str(tmp_path / "none.pth")]) == 2


def test_python_dash_m_entry_point(model_dir, checkpoint, inputs, tmp_path):
    r = subprocess.run([sys.executable, "-m", "hypir", "restore", str(inputs / "t.tiff"), "-o", str(tmp_path),
                        "--base-model", str(model_dir), "--weights", str(checkpoint["pth"]), "--upscale", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "t.png").size == (20, 12)
    assert "restored 1 of 1" in r.stderr


def test_encoder_flag_replaces_the_vae_encoder(inputs, model_dir, checkpoint, tmp_path, capsys):
    from hypir.models.components import load_components
    from hypir.models.sd2 import save_encoder

    own = save_encoder(load_components(model_dir).vae, tmp_path / "own.safetensors")
    vae = load_components(model_dir).vae
    with torch.no_grad():
        vae.encoder.conv_in.weight.mul_(1.5)
    changed = save_encoder(vae, tmp_path / "changed.safetensors")
    results = {}
    for name, extra in (("plain", []), ("own", ["--encoder", str(own)]), ("changed", ["--encoder", str(changed)])):
        out = tmp_path / name
        assert main(_args(model_dir, checkpoint, str(inputs / "rgb.jpg"), "-o", str(out), *extra)) == 0
        results[name] = np.asarray(Image.open(out / "rgb.png"))
    assert np.array_equal(results["plain"], results["own"])  # the model's own encoder: same result
    assert not np.array_equal(results["plain"], results["changed"])
    assert main(_args(model_dir, checkpoint, str(inputs / "rgb.jpg"), "-o", str(tmp_path / "x"),
                      "--encoder", str(checkpoint["safetensors"]))) == 2
    assert "encoder: " in capsys.readouterr().err


def test_preset_released_writes_the_released_picture(inputs, model_dir, checkpoint, tmp_path):
    """--preset released: the Restorer's released preset (its tiles, unmerged LoRA), floored to 8 bits."""
    from hypir import Restorer
    from hypir.data.io import read_image

    out = tmp_path / "out"
    assert main(_args(model_dir, checkpoint, str(inputs / "t.tiff"), "-o", str(out), "--upscale", "2",
                      "--preset", "released", "--device", "cpu", "--dtype", "fp32", "--seed", "3")) == 0
    got = np.asarray(Image.open(out / "t.png"))
    r = Restorer.from_pretrained(model_dir, checkpoint["safetensors"], device="cpu", dtype="fp32", preset="released")
    want = r(read_image(inputs / "t.tiff")[0], upscale=2, seed=3)
    assert got.shape == (24, 40, 3) and r.last.plans["encode"].tile == 512  # 24 x 40 x2 -> 512 x 853 work: 512/256 tiles
    assert np.array_equal(got, np.floor(want.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    assert not np.array_equal(got, np.round(want.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
