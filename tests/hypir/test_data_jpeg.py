"""hypir.data.jpeg: batched JPEG against PIL's encoder/decoder (libjpeg), per-sample quality."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import hypir_kernels as hk
from hypir.data.degrade import random_jpeg
from hypir.data.jpeg import jpeg, quant_tables


def _image(h=70, w=90, seed=0):
    x = hk.gaussian_blur(torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)), 2.0)
    x = (x - x.min()) / (x.max() - x.min())
    return (x * 255).round() / 255


def _pil(x, q):
    a = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=q, subsampling=2)  # 4:2:0
    buf.seek(0)
    return torch.from_numpy(np.asarray(Image.open(buf)).astype(np.float32) / 255).permute(2, 0, 1)[None]


def _psnr(a, b):
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


@pytest.mark.parametrize("q", [10, 30, 50, 75, 95])
def test_close_to_libjpeg_and_as_lossy(q):
    x = _image()
    ours, ref = jpeg(x, q), _pil(x, q)
    assert _psnr(ours, ref) > 34  # measured 35-45 dB; nearest-neighbour chroma gave 31-32
    assert abs(_psnr(ours, x) - _psnr(ref, x)) < 0.5  # the same distortion as libjpeg at that quality


def test_per_sample_quality_in_one_batch():
    x = torch.cat([_image(40, 56, s) for s in range(3)])
    q = torch.tensor([20, 60, 95])
    y = jpeg(x, q)
    for b in range(3):
        torch.testing.assert_close(y[b:b + 1], jpeg(x[b:b + 1], int(q[b])), rtol=0, atol=1e-6)
    errors = [float(((y[b] - x[b]) ** 2).mean()) for b in range(3)]
    assert errors[0] > errors[1] > errors[2]


def test_tables_follow_libjpeg_scaling():
    luma, chroma = quant_tables(torch.tensor([50, 100, 1]))
    assert luma[0, 0, 0] == 16 and chroma[0, 0, 0] == 17  # quality 50: the base tables
    assert (luma[1] == 1).all()  # quality 100: all ones
    assert (luma[2] == 255).all() and (chroma[2] == 255).all()  # quality 1: clamped to 255


def test_random_jpeg_draws_qualities_from_the_seed():
    x = torch.rand(16, 3, 16, 16) * 1.2 - 0.1  # out of range on purpose: clamped first
    a, qa = random_jpeg(x, seed=4)
    b, qb = random_jpeg(x, seed=4)
    assert torch.equal(a, b) and torch.equal(qa, qb) and (qa >= 30).all() and (qa <= 95).all()
    assert a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize("args,match", [
    ((torch.zeros(1, 1, 8, 8), 50), "x: expected 3"), ((torch.zeros(1, 3, 8, 8), 0), "quality"),
    ((torch.zeros(2, 3, 8, 8), torch.tensor([50])), "quality"), ((torch.zeros(1, 3, 8, 8), 50.5), "quality"),
])
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=f"^{match}"):
        jpeg(*args)
    with pytest.raises(ValueError, match="^quality_range"):
        random_jpeg(torch.zeros(1, 3, 8, 8), 0, quality_range=(0, 50))


def test_odd_sizes_and_empty_batches():
    assert jpeg(torch.rand(2, 3, 13, 29), 50).shape == (2, 3, 13, 29)
    assert jpeg(torch.rand(0, 3, 16, 16), 50).shape == (0, 3, 16, 16)


def test_quality_of_the_wrong_type_is_named():
    for q in ("50", 50.0, [50]):
        with pytest.raises(ValueError, match="^quality"):
            jpeg(torch.zeros(1, 3, 8, 8), q)
