import torch

from hypir.data import GeneratedImages, generated_image


def test_generated_images_are_deterministic_varied_and_in_range():
    a, b = generated_image(64, 1), generated_image(64, 1)
    assert torch.equal(a, b) and a.shape == (3, 64, 64)
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    others = [generated_image(64, s) for s in range(2, 6)]
    assert all(not torch.equal(a, o) for o in others)
    # edges and texture, not flat colour: a noticeable Laplacian
    lap = (a[:, 1:-1, 1:-1] * 4 - a[:, :-2, 1:-1] - a[:, 2:, 1:-1] - a[:, 1:-1, :-2] - a[:, 1:-1, 2:]).abs()
    assert float(lap.mean()) > 0.005


def test_dataset_flip_follows_epoch():
    ds = GeneratedImages(4, size=32, seed=3)
    assert len(ds) == 4
    flips = {e: torch.equal(ds.sample(1, e)["gt"], generated_image(32, (3 * 1_000_003 + 1) % (1 << 63))) for e in range(8)}
    assert set(flips.values()) == {True, False}
    assert torch.equal(ds.sample(1, 2)["gt"], ds.sample(1, 2)["gt"])
