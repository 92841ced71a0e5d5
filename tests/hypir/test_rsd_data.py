"""RSD data: scikit-learn's digits, and the corrupted observations of each task."""
import pytest
import torch

from hypir_kernels.operators import Blur
from hypir.rsd.data import digits
from hypir.rsd.tasks import corrupt


def test_digits_splits_are_disjoint_and_scaled():
    train, lt = digits(16, "train")
    held, lh = digits(16, "heldout")
    assert train.shape == (1500, 1, 16, 16) and held.shape == (297, 1, 16, 16)
    assert float(train.min()) >= -1 and float(train.max()) <= 1 and float(train.max()) > 0.9
    assert set(lt.tolist()) == set(range(10)) == set(lh.tolist())
    flat_train = {tuple(v) for v in digits(8, "train")[0].flatten(1).tolist()}
    assert not any(tuple(v) in flat_train for v in digits(8, "heldout")[0].flatten(1).tolist())
    with pytest.raises(ValueError, match="^split"):
        digits(16, "test")


def test_each_task_corrupts_as_documented():
    x = digits(16, "train")[0][:64]
    blur = corrupt(x, "blur")
    torch.testing.assert_close(blur.y, Blur(2.0, kernel_size=9).A(x))
    assert blur.mask is None and blur.task == "blur"

    inp = corrupt(x, "inpainting", keep=0.1, seed=3)
    assert inp.mask.shape == (64, 1, 16, 16)
    assert 0.07 < float(inp.mask.mean()) < 0.13
    assert torch.equal(inp.y, x * inp.mask)
    assert torch.equal(corrupt(x, "inpainting", keep=0.1, seed=3).mask, inp.mask)  # seeded
    assert not torch.equal(corrupt(x, "inpainting", keep=0.1, seed=4).mask, inp.mask)
    # image i's mask does not depend on how many images are corrupted with it
    assert torch.equal(corrupt(x[:5], "inpainting", keep=0.1, seed=3).mask, inp.mask[:5])

    sr = corrupt(x, "sr", sr_factor=2)
    blocks = sr.y.unfold(2, 2, 2).unfold(3, 2, 2)  # [N, C, 8, 8, 2, 2]
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks), atol=1e-6)  # constant 2x2 blocks
    torch.testing.assert_close(blocks[..., 0, 0], torch.nn.functional.avg_pool2d(x, 2))

    noisy = corrupt(x, "blur", sigma_n=0.2, seed=1)
    assert float((noisy.y - blur.y).std()) == pytest.approx(0.2, rel=0.05)
    noisy_inp = corrupt(x, "inpainting", sigma_n=0.2, seed=3)
    assert torch.equal(noisy_inp.y * (1 - noisy_inp.mask), torch.zeros_like(x))  # nothing outside the mask
    with pytest.raises(ValueError, match="^task"):
        corrupt(x, "denoise")
    with pytest.raises(ValueError, match="^sigma_n"):
        corrupt(x, "blur", sigma_n=-0.1)


def test_mri_observations_keep_only_acquired_k_space():
    from hypir_kernels.operators import MultiCoilMRI
    from hypir.rsd.data import coil_maps, complex_images

    x = digits(16, "train")[0][:8]
    obs = corrupt(x, "mri", acceleration=4, seed=2, coils=4, center_fraction=0.125)
    assert obs.y.shape == (8, 4, 16, 16) and obs.y.is_complex() and obs.mask.shape == (8, 16)
    assert obs.maps.shape == (4, 16, 16)
    torch.testing.assert_close(obs.maps.abs().pow(2).sum(0), torch.ones(16, 16))  # sum_c |S_c|^2 = 1
    assert torch.equal(obs.mask.sum(1), torch.full((8,), 4.0))  # 16 / R columns, ACS included
    unacquired = (obs.mask == 0).view(8, 1, 1, 16).expand_as(obs.y)
    assert torch.equal(obs.y[unacquired], torch.zeros_like(obs.y[unacquired]))
    img = complex_images(x, 3)
    torch.testing.assert_close(img.abs(), (x[:, 0] + 1) / 2)
    torch.testing.assert_close(obs.y, MultiCoilMRI(coil_maps(4, 16).expand(8, -1, -1, -1), obs.mask).A(img))
    with pytest.raises(ValueError, match="^sigma_n: the mri task is noiseless"):
        corrupt(x, "mri", sigma_n=0.1)
