"""Proximal FID: no clean image needed, small for samples from the right law, large otherwise."""
import pytest
import torch

from hypir.rsd.config import TaskConfig
from hypir.rsd.data import digits
from hypir.rsd.tasks import corrupt
from hypir.rsd.evaluate import data_view, observe, proximal_fid


@pytest.mark.parametrize("kind", ["blur", "inpainting"])
def test_proximal_fid_ranks_samples_by_their_law(digit_features, kind):
    net, _ = digit_features
    task = TaskConfig(kind=kind, sigma_n=0.1, keep=0.5)
    data = corrupt(digits(16, "train")[0][:1000], kind, 0.1, seed=0, keep=0.5)
    held = digits(16, "heldout")[0]
    good = proximal_fid(net, held, data, task)  # clean images of the data's law, seen through A
    shifted = proximal_fid(net, -held, data, task)  # inverted digits
    noise = proximal_fid(net, torch.rand_like(held) * 2 - 1, data, task)
    assert good < shifted and good < noise
    with pytest.raises(ValueError, match="^data: observations of task"):
        proximal_fid(net, held, data, TaskConfig(kind="sr"))


def test_observe_draws_fresh_masks():
    x = digits(16, "heldout")[0][:4]
    task = TaskConfig(kind="inpainting", keep=0.5)
    a, b = observe(x, task, seed=1), observe(x, task, seed=2)
    assert not torch.equal(a == 0, b == 0)
    assert torch.equal(observe(x, TaskConfig(kind="clean"), 0), x)


def test_mri_samples_are_scored_by_magnitude_and_zero_filled_reconstructions(digit_features):
    from hypir.rsd.data import complex_images
    from hypir.rsd.evaluate import fid_view

    net, _ = digit_features
    task = TaskConfig(kind="mri", acceleration=4, coils=4)
    data = corrupt(digits(16, "train")[0][:1000], "mri", acceleration=4, seed=0, coils=4)
    held = digits(16, "heldout")[0]
    as_samples = torch.view_as_real(complex_images(held, seed=5)).permute(0, 3, 1, 2)  # [N, 2, S, S]
    torch.testing.assert_close(fid_view(as_samples), held, atol=1e-5, rtol=0)  # magnitude, digits' scale
    good = proximal_fid(net, as_samples, data, task)
    inverted = torch.view_as_real(complex_images(-held, seed=5)).permute(0, 3, 1, 2)
    noise = torch.randn_like(as_samples) * 0.5
    assert good < proximal_fid(net, inverted, data, task) and good < proximal_fid(net, noise, data, task)
    with pytest.raises(ValueError, match=r"^x: expected 2-channel"):
        observe(held, task, 0)
    # the observations as features see them: zero-filled magnitudes, blurred in an R = 4 MRI way
    seen = data_view(data)
    assert seen.shape == (1000, 1, 16, 16) and seen.min() >= -1 and seen.max() <= 1
    clean = digits(16, "train")[0][:1000]
    assert 0 < float((seen - clean).abs().mean()) < 0.5
    blurred = corrupt(clean[:8], "blur", 0.0, seed=0)
    assert data_view(blurred) is blurred.y
    with pytest.raises(ValueError, match="^data: expected hypir.rsd.data.Observations"):
        data_view(blurred.y)
    with pytest.raises(ValueError, match="^data: MRI observations need"):
        data_view(type(data)(data.y, None, "mri", 0.0, data.maps))
