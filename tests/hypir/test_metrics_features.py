"""The digit feature network FID uses here: it learns the digits, saves and loads, and its FID
orders sets the way a feature space must."""
import pytest
import torch

from hypir.metrics.features import fid_score, load_features, save_features
from hypir.rsd.data import digits


def test_it_learns_the_digits(digit_features):
    model, accuracy = digit_features
    assert accuracy > 0.85  # 10 classes: chance is 0.1


def test_save_load_round_trip(digit_features, tmp_path):
    model, accuracy = digit_features
    path = save_features(model, tmp_path / "f.safetensors", accuracy=accuracy, size=16)
    loaded = load_features(path)
    x = digits(16, "heldout")[0][:8]
    torch.testing.assert_close(loaded.features(x), model.features(x))
    assert loaded.info == {"accuracy": accuracy, "size": 16}
    with pytest.raises(ValueError, match="^features: .* expected a feature network written by save_features; found a safetensors file without its config"):
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(1)}, str(tmp_path / "w.safetensors"))
        load_features(tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"^x: expected \[B, 1, S, S\]"):
        model.features(torch.zeros(2, 3, 16, 16))


def test_fid_orders_image_sets(digit_features):
    model, _ = digit_features
    train, held = digits(16, "train")[0], digits(16, "heldout")[0]
    same = fid_score(model, held, train[:1000])
    blurred = fid_score(model, torch.nn.functional.avg_pool2d(held, 3, 1, 1), train[:1000])
    noise = fid_score(model, torch.rand_like(held) * 2 - 1, train[:1000])
    assert 0 <= same < blurred < noise
    assert fid_score(model, held, held) == pytest.approx(0.0, abs=1e-6)


def test_inception_features_from_a_local_file(tmp_path, monkeypatch):
    """torch-fidelity's FID Inception built from a local file (random weights of the real layout
    here: the real file cannot be downloaded): 2048-d features, grey and RGB inputs, bad files named."""
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    from hypir.metrics.features import InceptionFeatures

    cls = fidelity.FeatureExtractorInceptionV3
    with monkeypatch.context() as m:  # build once without weights to get the layout's state dict
        m.setattr(cls, "load_state_dict", lambda self, sd, strict=True: None)
        m.setattr(fidelity.torch, "load", lambda *a, **k: {})
        net = cls("inception-v3-compat", ["2048"], feature_extractor_weights_path="unused")
    torch.save(net.state_dict(), tmp_path / "inception.pth")
    feats = InceptionFeatures(tmp_path / "inception.pth")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    f = feats.features(x)
    assert f.shape == (2, 2048) and torch.isfinite(f).all()
    torch.testing.assert_close(feats.features(x[:, :1]), feats.features(x[:, :1].expand(-1, 3, -1, -1)))
    torch.save({"w": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="^weights: .* expected the FID Inception-v3 state dict; found a state dict of 1 tensors without its Mixed_7c keys"):
        InceptionFeatures(tmp_path / "other.pth")
    with pytest.raises(FileNotFoundError, match="^weights: no such file"):
        InceptionFeatures(tmp_path / "none.pth")
