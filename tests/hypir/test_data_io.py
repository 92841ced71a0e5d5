"""Image files: orientation, grayscale, alpha, 16 bit, unreadable files."""
import numpy as np
import pytest
import torch
from PIL import Image

from hypir.data.io import ImageMeta, list_inputs, read_image, write_image


def test_exif_rotation_is_applied(tmp_path):
    arr = np.zeros((10, 30, 3), np.uint8)
    arr[:, :5] = 255  # a white band on the left
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    rgb, meta = read_image(tmp_path / "r.jpg")
    assert rgb.shape == (3, 30, 10) and not meta.grey
    assert rgb[:, :5].mean() > 0.9 and rgb[:, -5:].mean() < 0.1  # the band is now on top


def test_grey_16_bit_round_trip_keeps_precision(tmp_path):
    values = (np.arange(12 * 9, dtype=np.uint16).reshape(12, 9) * 601)
    Image.fromarray(values).save(tmp_path / "g16.png")
    rgb, meta = read_image(tmp_path / "g16.png")
    assert meta.grey and meta.bits == 16 and rgb.shape == (3, 12, 9)
    assert torch.equal(rgb[0], rgb[2])
    write_image(tmp_path / "out.png", rgb, meta)
    back = Image.open(tmp_path / "out.png")
    assert back.mode.startswith("I") and np.array_equal(np.asarray(back).astype(np.int64), values.astype(np.int64))


def test_alpha_is_kept_and_resized(tmp_path):
    rng = np.random.default_rng(0)
    arr = (rng.random((8, 6, 4)) * 255).astype(np.uint8)
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    rgb, meta = read_image(tmp_path / "a.png")
    assert meta.alpha is not None and meta.alpha.shape == (1, 8, 6)
    write_image(tmp_path / "same.png", rgb, meta)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "same.png")), arr)
    write_image(tmp_path / "big.png", torch.rand(3, 16, 12), meta)
    big = Image.open(tmp_path / "big.png")
    assert big.mode == "RGBA" and big.size == (12, 16)


def test_palette_and_grey_alpha(tmp_path):
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P").save(tmp_path / "p.png")
    rgb, meta = read_image(tmp_path / "p.png")
    assert rgb.shape == (3, 8, 8) and meta.alpha is None
    Image.fromarray(np.full((5, 5, 2), 128, np.uint8), "LA").save(tmp_path / "la.png")
    rgb, meta = read_image(tmp_path / "la.png")
    assert meta.grey and meta.alpha is not None
    write_image(tmp_path / "la-out.png", rgb, meta)
    assert Image.open(tmp_path / "la-out.png").mode == "LA"


def test_unreadable_file_raises_value_error(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read the image"):
        read_image(tmp_path / "bad.png")


def test_list_inputs(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / "d" / name).write_bytes(b"")
    (tmp_path / "x.weird").write_bytes(b"")
    files = list_inputs([tmp_path / "d", tmp_path / "x.weird"])
    assert [f.name for f in files] == ["a.JPG", "b.png", "x.weird"]
    with pytest.raises(FileNotFoundError, match="input: no such file"):
        list_inputs([tmp_path / "missing"])


def test_write_is_plain_rgb_by_default(tmp_path):
    write_image(tmp_path / "o.png", torch.ones(3, 4, 5), ImageMeta())
    im = Image.open(tmp_path / "o.png")
    assert im.mode == "RGB" and im.size == (5, 4) and np.asarray(im).min() == 255


@pytest.mark.parametrize("bad", [torch.rand(4, 5), torch.rand(3, 0, 5), torch.rand(4, 5, 5), "img"])
def test_write_rejects_bad_images(tmp_path, bad):
    with pytest.raises(ValueError, match="^rgb:"):
        write_image(tmp_path / "x.png", bad)
