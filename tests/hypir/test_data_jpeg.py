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


def _released_diffjpeg(x, quality):
    """The HYPIR release's DiffJPEG (BasicSR ``utils/diffjpeg.py``, ``differentiable=False``)
    restated in its own form: an [8, 8, 8, 8] cosine tensor contracted with ``tensordot``, block
    splitting by view/permute, tables ``base.T * factor``, ``repeat`` chroma upsampling, zero
    padding to 16, float32 throughout."""
    luma = torch.tensor([[16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
                         [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
                         [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
                         [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]],
                        dtype=torch.float32).T
    chroma = torch.full((8, 8), 99.0)
    chroma[:4, :4] = torch.tensor([[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]).T
    i = torch.arange(8, dtype=torch.float64)
    c = torch.cos((2 * i[:, None] + 1) * i[None, :] * np.pi / 16)  # c[x, u]
    fwd = torch.einsum("xu,yv->xyuv", c, c).float()
    inv = torch.einsum("ux,vy->xyuv", c, c).float()  # [x, y, u, v] = cos((2u+1)x..) cos((2v+1)y..)
    alpha = torch.tensor([1 / np.sqrt(2)] + [1.0] * 7, dtype=torch.float64)
    alpha = torch.outer(alpha, alpha).float()
    factor = torch.tensor([(5000.0 / q if q < 50 else 200.0 - 2 * q) / 100 for q in quality.tolist()]).float()
    b, _, h, w = x.shape
    x = torch.nn.functional.pad(x, (0, (-w) % 16, 0, (-h) % 16))
    H, W = x.shape[-2:]
    m = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]).T
    ycc = torch.tensordot((x * 255).permute(0, 2, 3, 1), m, dims=1) + torch.tensor([0.0, 128, 128])
    planes = [ycc[..., 0]] + [torch.nn.functional.avg_pool2d(ycc[..., k][:, None], 2)[:, 0] for k in (1, 2)]
    out = []
    for k, p in enumerate(planes):
        ph, pw = p.shape[1:]
        blocks = p.view(b, ph // 8, 8, -1, 8).permute(0, 1, 3, 2, 4).contiguous().view(b, -1, 8, 8)
        coef = alpha * 0.25 * torch.tensordot(blocks - 128, fwd, dims=2)
        table = (luma if k == 0 else chroma).expand(b, 1, 8, 8) * factor.view(b, 1, 1, 1)
        coef = torch.round(coef / table) * table
        back = 0.25 * torch.tensordot(coef * alpha, inv, dims=2) + 128
        p = back.view(b, ph // 8, pw // 8, 8, 8).permute(0, 1, 3, 2, 4).contiguous().view(b, ph, pw)
        if k:
            p = p.unsqueeze(-1).repeat(1, 1, 2, 2).view(-1, ph * 2, pw * 2)
        out.append(p)
    inv_m = torch.tensor([[1.0, 0.0, 1.402], [1, -0.344136, -0.714136], [1, 1.772, 0]]).T
    rgb = torch.tensordot(torch.stack(out, -1) + torch.tensor([0, -128.0, -128.0]), inv_m, dims=1).permute(0, 3, 1, 2)
    return (rgb.clamp(0, 255) / 255)[:, :, :h, :w]


def test_released_variant_is_the_releases_diffjpeg():
    x = torch.cat([_image(37, 53, seed=s) for s in range(3)])
    q = torch.tensor([31.7, 62.25, 94.9])
    ref = _released_diffjpeg(x, q)
    out = jpeg(x, q, variant="released")
    assert (out - ref).abs().max() < 2e-5  # float32 sums in another order
    # Each released choice matters: ours differs from it well beyond that.
    assert (jpeg(x, q.round().long()) - ref).abs().max() > 0.02
    # The luma table is transposed: a vertical-frequency pattern is quantised with the
    # horizontal-frequency entries (and vice versa).
    stripes = (torch.arange(16.0)[:, None] % 2).expand(16, 16)[None, None].expand(1, 3, 16, 16) * 0.5 + 0.25
    assert not torch.allclose(jpeg(stripes, torch.tensor([40.0]), variant="released"),
                              jpeg(stripes.transpose(-1, -2), torch.tensor([40.0]), variant="released").transpose(-1, -2))


def test_released_variant_equals_the_releases_stored_output():
    """The release's DiffJPEG run once on 8-bit images (``released_degradation_expected.py``): the
    same bits here, quantiser ties included (ours resolves them the same way only because it does
    the release's float32 operations in its order)."""
    import sys
    from pathlib import Path

    from safetensors import safe_open

    sys.path.insert(0, str(Path(__file__).parent))
    from released_degradation_expected import STORED, jpeg_case

    with safe_open(str(STORED), "pt") as f:
        expected = f.get_tensor("jpeg/out")
    x, q = jpeg_case()
    out = jpeg(x, q, variant="released")
    assert (out - expected).abs().max() <= 1e-6
    assert (jpeg(x, q.round().long()) - expected).abs().max() > 0.02


def test_released_variant_checks_its_qualities():
    x = torch.zeros(2, 3, 8, 8)
    assert jpeg(x, 50.5, variant="released").shape == x.shape  # float qualities, as released
    for q in (100.0, 0.5, torch.tensor([50.0, float("nan")])):
        with pytest.raises(ValueError, match=r"^quality: expected a number or \[B=2\] floats in \[1, 100\)"):
            jpeg(x, q, variant="released")
    with pytest.raises(ValueError, match="^variant: expected one of"):
        jpeg(x, 50, variant="libjpeg")
