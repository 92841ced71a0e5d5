"""The discriminator: spectral norm (power iteration only on request), frozen backbones, heads."""
import pytest
import torch

from hypir.train.discriminator import (BlurPool, Discriminator, ReleasedHead, SpectralNorm, spectral_norm,
                                      update_spectral_norms)


def test_spectral_norm_converges_to_the_largest_singular_value():
    conv = spectral_norm(torch.nn.Conv2d(5, 7, 3), torch.Generator().manual_seed(0))
    w = conv.parametrizations.weight.original
    for _ in range(300):
        update_spectral_norms(conv)
    sigma = torch.linalg.matrix_norm(w.detach().flatten(1), ord=2)
    assert torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2) == pytest.approx(1.0, abs=1e-3)
    torch.testing.assert_close(conv.weight, w / sigma, rtol=1e-3, atol=1e-6)


def test_forward_does_not_iterate():
    """The estimate moves only in update_spectral_norms, not per forward pass (accumulation- and
    DDP-independence of a step)."""
    conv = spectral_norm(torch.nn.Linear(6, 4))
    sn = conv.parametrizations.weight[0]
    assert isinstance(sn, SpectralNorm)
    u = sn.u.clone()
    conv.train()
    for _ in range(3):
        conv(torch.randn(2, 6)).sum().backward()
    assert torch.equal(sn.u, u)
    with torch.no_grad():
        conv.parametrizations.weight.original.mul_(3).add_(torch.randn(4, 6))
    update_spectral_norms(conv)
    assert not torch.equal(sn.u, u)


@pytest.mark.parametrize("head, shapes", [
    ("multistage", [(2, 1, 16, 16), (2, 1, 8, 8), (2, 1, 4, 4)]),
    # released: maps on all stages but the last (16 -> blur 17 -> conv s2 8 -> blur 7 -> s2 4), pooled last
    ("released", [(2, 1, 4, 4), (2, 1, 2, 2), (2, 1)]),
])
def test_conv_discriminator_levels_and_frozen_backbone(head, shapes):
    d = Discriminator("conv", head_channels=8, conv_widths=(4, 8, 16), head=head)
    logits = d(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert [tuple(t.shape) for t in logits] == shapes
    trainable = {n for n, p in d.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("heads.") for n in trainable)
    d.train()
    assert not d.backbone.training
    # seeded: the same seed builds the same network
    d2 = Discriminator("conv", head_channels=8, conv_widths=(4, 8, 16), head=head)
    assert all(torch.equal(a, b) for a, b in zip(d.state_dict().values(), d2.state_dict().values()))


def test_released_head_has_the_released_layers():
    """On open_clip ConvNeXt-XXL's widths (stages 384/768/1536/3072, 1024-d embedding) the head's
    weights are MultiLevelDConv(level=4, in_ch1=[384, 768, 1536], in_ch2=1024, out_ch=512, down=2)'s."""
    head = ReleasedHead((384, 768, 1536, 3072), 1024, 512, torch.Generator().manual_seed(0))
    got = [tuple(p.shape) for n, p in head.named_parameters()]
    want = []
    for c in (384, 768, 1536):
        want += [(512,), (512, c, 3, 3), (1,), (1, 512, 1, 1)]  # bias, then weight (parametrized: .original last)
    want += [(512,), (512, 1024), (1,), (1, 512)]
    assert sorted(got) == sorted(want)
    assert len(head.maps) == 3


def test_blurpool_is_the_binomial_filter():
    blur = BlurPool(2, pad=2)
    x = torch.zeros(1, 2, 5, 5)
    x[0, :, 2, 2] = 1
    y = blur(x)
    assert y.shape == (1, 2, 6, 6)  # H + 2 pad - 3
    a = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
    torch.testing.assert_close(y[0, 0, 1:5, 1:5], torch.outer(a, a).flip(0, 1))
    assert BlurPool(1, pad=1)(torch.ones(1, 1, 6, 6)).shape == (1, 1, 5, 5)


def test_released_head_names_too_small_images():
    d = Discriminator("conv", head_channels=8, conv_widths=(4, 8, 16))
    with pytest.raises(ValueError, match=r"x: 8x8 images give a 2x2 feature map at level 1; .* at least 16 px"):
        d(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="head"):
        Discriminator("conv", head="patch")


def test_convnext_backbone_from_a_local_torchvision_file(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.convnext_tiny(weights=None)
    torch.save(net.state_dict(), tmp_path / "convnext_tiny.pth")
    d = Discriminator("convnext_tiny", tmp_path / "convnext_tiny.pth", head_channels=8, head="multistage")
    assert d.backbone.channels == (96, 192, 384, 768)
    assert torch.equal(d.backbone.features[0][0].weight, net.features[0][0].weight)
    logits = d(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert [t.shape[-1] for t in logits] == [16, 8, 4, 2]
    released = Discriminator("convnext_tiny", tmp_path / "convnext_tiny.pth", head_channels=8)
    x = torch.rand(2, 3, 128, 128) * 2 - 1  # stages 32, 16, 8, 4 px -> maps 8, 4, 2 and the pooled logit
    assert [tuple(t.shape) for t in released(x)] == [(2, 1, 8, 8), (2, 1, 4, 4), (2, 1, 2, 2), (2, 1)]
    net.eval()
    with torch.no_grad():  # pooled: torchvision's pooling and LayerNorm, before its classifier
        normalized = ((x + 1) / 2 - torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)) / torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
        want = net.classifier[:2](net.avgpool(net.features(normalized)))
        torch.testing.assert_close(released.backbone.pool(released.backbone(x)[-1]), want, rtol=1e-4, atol=1e-5)
    torch.save({"other": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="discriminator.weights: .* is not torchvision convnext_tiny weights"):
        Discriminator("convnext_tiny", tmp_path / "wrong.pth")
    with pytest.raises(FileNotFoundError, match="discriminator.weights"):
        Discriminator("convnext_tiny", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="backbone"):
        Discriminator("vit")


@pytest.mark.parametrize("layout", ["timm", "open_clip"])
def test_timm_backbone_from_timm_or_open_clip_weights(tmp_path, layout):
    """timm's own state dict, or an open_clip checkpoint whose image tower is the timm model
    (``visual.trunk.*`` next to the projection and text tower): same features, each with its
    normalisation (ImageNet for timm, CLIP for open_clip)."""
    timm = pytest.importorskip("timm")
    net = timm.create_model("convnext_atto", pretrained=False, num_classes=0).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    if layout == "timm":
        state, mean, std = net.state_dict(), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    else:
        state = {f"visual.trunk.{k}": v for k, v in net.state_dict().items()}
        proj = torch.randn(8, 320, generator=g) * 0.05
        state |= {"visual.head.proj.weight": proj, "text.token_embedding.weight": torch.zeros(10, 8)}
        mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    d = Discriminator("timm/convnext_atto", tmp_path / "w.safetensors", head_channels=8)
    assert d.backbone.channels == (40, 80, 160, 320)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    feats = d.backbone(x)
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]
    normalized = ((x + 1) / 2 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(feats[-1], net.forward_features(normalized), rtol=1e-4, atol=1e-5)
        # pooled: timm's pre-logits head (pool + norm), then open_clip's image projection when it has one
        pooled = net.forward_head(net.forward_features(normalized), pre_logits=True)
        if layout == "open_clip":
            pooled = pooled @ proj.t()
        torch.testing.assert_close(d.backbone.pool(feats[-1]), pooled, rtol=1e-4, atol=1e-5)
    assert d.backbone.pooled_channels == (8 if layout == "open_clip" else 320)
    assert [tuple(t.shape) for t in d(x)] == [(1, 1, 4, 4), (1, 1, 2, 2), (1, 1, 1, 1), (1, 1)]
    assert {n for n, p in d.named_parameters() if p.requires_grad} == {n for n, _ in d.heads.named_parameters(prefix="heads")}


def test_timm_backbone_refuses_other_weights_and_names(tmp_path):
    timm = pytest.importorskip("timm")
    torch.save(timm.create_model("convnext_femto", pretrained=False).state_dict(), tmp_path / "femto.pth")
    with pytest.raises(ValueError, match=r"discriminator.weights: .* is not timm convnext_atto .*other shapes \['stem"):
        Discriminator("timm/convnext_atto", tmp_path / "femto.pth")
    with pytest.raises(ValueError, match="backbone: timm/no_such_model"):
        Discriminator("timm/no_such_model", tmp_path / "femto.pth")
    with pytest.raises(ValueError, match="backbone"):
        Discriminator("timm/")


@pytest.mark.parametrize("backbone, module", [("timm/convnext_atto", "timm"), ("convnext_tiny", "torchvision")])
def test_a_missing_backbone_library_is_named(monkeypatch, tmp_path, backbone, module):
    monkeypatch.setitem(__import__("sys").modules, module, None)  # import fails as if not installed
    with pytest.raises(ValueError, match=rf"^backbone: {backbone} needs {module} installed \(pip install {module}\)"):
        Discriminator(backbone, tmp_path / "w.pth")
