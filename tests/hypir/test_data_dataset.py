"""hypir.data.dataset: folders and CSV / parquet listings of real image files, random crops reproducible
from (seed, epoch, index), padding of small images, bad sources named."""
import pytest
import torch

from hypir.data.dataset import ImageDataset, read_listing
from hypir.data.io import write_image


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    g = torch.Generator().manual_seed(0)
    for i, (h, w) in enumerate([(40, 56), (64, 64), (20, 30)]):
        write_image(d / f"im{i}.png", torch.rand(3, h, w, generator=g))
    (d / "notes.txt").write_text("not an image")
    return d


def test_folder_crops_are_reproducible_and_change_with_the_epoch(folder):
    ds = ImageDataset(folder, crop=32, seed=1)
    assert len(ds) == 3
    a = ds[0]
    assert a["gt"].shape == (3, 32, 32) and a["prompt"] == "" and 0 <= a["gt"].min() and a["gt"].max() <= 1
    assert torch.equal(ImageDataset(folder, crop=32, seed=1)[0]["gt"], a["gt"])
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["gt"], a["gt"])
    assert not torch.equal(ImageDataset(folder, crop=32, seed=2)[0]["gt"], a["gt"])


def test_crop_is_a_window_of_the_image(folder):
    from hypir.data.io import read_image

    full, _ = read_image(folder / "im1.png")
    crop = ImageDataset(folder, crop=16, flip=False)[1]["gt"]
    windows = full.unfold(1, 16, 1).unfold(2, 16, 1)  # [3, 49, 49, 16, 16]
    assert ((windows - crop[:, None, None]).abs().amax(dim=(0, 3, 4)) == 0).any()


def test_small_images_are_padded(folder):
    item = ImageDataset(folder, crop=48, flip=False)[2]  # 20x30 image
    assert item["gt"].shape == (3, 48, 48)


def test_csv_listing_with_prompts(folder, tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_text("path,prompt\nimgs/im0.png,a cat\n" + f"{folder / 'im1.png'},\n")
    rows = read_listing(listing)
    assert rows[0] == (folder / "im0.png", "a cat") and rows[1][1] == ""
    ds = ImageDataset(listing, crop=16, prompt="default prompt")
    assert ds[0]["prompt"] == "a cat" and ds[1]["prompt"] == "default prompt"
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0)
    batch = next(iter(loader))
    assert batch["gt"].shape == (2, 3, 16, 16) and list(batch["prompt"]) == ["a cat", "default prompt"]


def test_parquet_listing_reads_like_the_csv(folder, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"path": ["imgs/im0.png", str(folder / "im1.png")], "prompt": ["a cat", None],
                      "width": [1, 2]})
    pq.write_table(table, tmp_path / "train.parquet")
    csv = tmp_path / "train.csv"
    csv.write_text("path,prompt\nimgs/im0.png,a cat\n" + f"{folder / 'im1.png'},\n")
    assert read_listing(tmp_path / "train.parquet") == read_listing(csv)
    a, b = ImageDataset(tmp_path / "train.parquet", crop=16, seed=3), ImageDataset(csv, crop=16, seed=3)
    assert torch.equal(a.sample(1, 2)["gt"], b.sample(1, 2)["gt"]) and a[0]["prompt"] == "a cat"
    pq.write_table(pa.table({"file": ["x.png"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"bad\.parquet: expected a 'path' column, got columns \['file'\]"):
        read_listing(tmp_path / "bad.parquet")
    pq.write_table(pa.table({"path": ["x.png", ""]}), tmp_path / "empty.parquet")
    with pytest.raises(ValueError, match=r"empty\.parquet:2: empty path"):
        read_listing(tmp_path / "empty.parquet")


def test_bad_sources(tmp_path, folder):
    with pytest.raises(ValueError, match="^source: expected"):
        ImageDataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="^source: no images"):
        ImageDataset(tmp_path / "empty")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,prompt\nx.png,y\n")
    with pytest.raises(ValueError, match="'path' column"):
        ImageDataset(bad)
    with pytest.raises(ValueError, match="^crop"):
        ImageDataset(folder, crop=0)
