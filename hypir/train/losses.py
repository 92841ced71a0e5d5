"""Training losses: the GAN objectives and LPIPS.

GAN (``kind``): ``"bce"`` -- BCE-with-logits with one-sided label smoothing as released (real
target 0.8, fake 0, generator target 0.8); ``"hinge"``. Each level's loss is the mean over its
logit map (or its ``[B, 1]`` pooled logits); ``reduction`` combines the levels: ``"sum"`` as
released (vision-aided-gan's ``multilevel_loss``, which HYPIR's discriminator uses: the loss
grows with the number of levels, so ``loss.gan = 0.5`` on 4 levels weighs each level 0.5) or
``"mean"`` (every level weighs ``1 / levels``: a quarter of the released weight on 4 levels).

LPIPS (Zhang et al. 2018, VGG16 variant): channel-normalised VGG16 activations at relu1_2 ..
relu5_3, squared differences weighted per channel by learned 1x1 "lin" layers, averaged over
pixels, summed over layers. Weights are read from **local** files only:
``vgg`` -- torchvision's VGG16 state dict (``vgg16-397923af.pth``; its ``features.*`` keys);
``lin`` -- the ``lpips`` package's ``weights/v0.1/vgg.pth`` (``lin0.model.1.weight`` ...).
Without them a **documented substitute** is used: the same network with seeded random VGG
weights and uniform lin weights (the "random network" baseline of the LPIPS paper, which still
tracks perceptual similarity far better than pixel losses but worse than trained VGG);
:attr:`LPIPS.substitute` says which one runs.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from hypir_kernels.checks import check_tensor

from ..files import read_state_dict

GAN_LOSSES = ("bce", "hinge")
GAN_REDUCTIONS = ("sum", "mean")
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # torchvision indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_SHIFT, _SCALE = (-0.030, -0.088, -0.188), (0.458, 0.448, 0.450)  # LPIPS' input scaling ([-1, 1] in)


_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _check_logits(name: str, logits) -> None:
    if not isinstance(logits, (list, tuple)) or not logits:
        raise ValueError(f"{name}: expected a non-empty list of logit tensors, got {type(logits).__name__}")
    for t in logits:
        check_tensor(name, t, dtypes=_FLOATS)
        if t.numel() == 0:
            raise ValueError(f"{name}: empty logit map {tuple(t.shape)}")


def _check_kind(kind) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"kind: expected one of {GAN_LOSSES}, got {kind!r}")


def _check_reduction(reduction) -> None:
    if reduction not in GAN_REDUCTIONS:
        raise ValueError(f"reduction: expected one of {GAN_REDUCTIONS}, got {reduction!r}")


def _over_levels(fn, logits: list[torch.Tensor], reduction: str) -> torch.Tensor:
    total = sum(fn(x) for x in logits)
    return total if reduction == "sum" else total / len(logits)


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor], kind: str = "bce",
                       real_label: float = 0.8, fake_label: float = 0.0, reduction: str = "sum") -> torch.Tensor:
    """``real``/``fake``: the discriminator's logits (one tensor per level) of real and generated
    images; each level's mean, summed (released) or averaged over levels (``reduction``)."""
    _check_kind(kind)
    _check_reduction(reduction)
    _check_logits("real", real)
    _check_logits("fake", fake)
    if kind == "bce":
        return (_over_levels(lambda x: F.binary_cross_entropy_with_logits(x, torch.full_like(x, real_label)), real, reduction)
                + _over_levels(lambda x: F.binary_cross_entropy_with_logits(x, torch.full_like(x, fake_label)), fake, reduction))
    return (_over_levels(lambda x: F.relu(1 - x).mean(), real, reduction)
            + _over_levels(lambda x: F.relu(1 + x).mean(), fake, reduction))


def generator_loss(fake: list[torch.Tensor], kind: str = "bce", target: float = 0.8, reduction: str = "sum") -> torch.Tensor:
    """The generator's objective on the logits of generated images; levels combined by ``reduction``."""
    _check_kind(kind)
    _check_reduction(reduction)
    _check_logits("fake", fake)
    if kind == "bce":
        return _over_levels(lambda x: F.binary_cross_entropy_with_logits(x, torch.full_like(x, target)), fake, reduction)
    return _over_levels(lambda x: -x.mean(), fake, reduction)


def _vgg16_features() -> nn.Sequential:
    layers, cin = [], 3
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
            cin = v
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """``(x, y)`` ``[B, 3, H, W]`` in [-1, 1] -> ``[B]`` distances. Frozen (no parameters train).

    Args:
        vgg: local torchvision VGG16 weights, or None for the substitute's random VGG.
        lin: local LPIPS lin weights, or None for uniform weights (``1 / channels``).
        seed: the substitute's VGG initialisation.
    """

    def __init__(self, vgg: str | os.PathLike | None = None, lin: str | os.PathLike | None = None, seed: int = 0):
        super().__init__()
        self.features = _vgg16_features()[: _TAPS[-1] + 1]
        if vgg is not None:
            state = {k.removeprefix("features."): v for k, v in read_state_dict(vgg, "loss.lpips_vgg").items() if k.startswith("features.")}
            try:
                self.features.load_state_dict(state)
            except RuntimeError as e:
                raise ValueError(f"loss.lpips_vgg: {str(vgg)!r} is not torchvision VGG16 weights: {str(e).splitlines()[0]}") from None
        else:
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                for m in self.features:
                    if isinstance(m, nn.Conv2d):
                        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
                        m.bias.zero_()
        channels = [self.features[i - 1].out_channels for i in _TAPS]
        if lin is not None:
            state = read_state_dict(lin, "loss.lpips_lin")
            weights = []
            for i, c in enumerate(channels):
                w = state.get(f"lin{i}.model.1.weight")
                if w is None or tuple(w.shape) != (1, c, 1, 1):
                    raise ValueError(f"loss.lpips_lin: {str(lin)!r} lacks lin{i}.model.1.weight of shape (1, {c}, 1, 1)")
                weights.append(w.flatten().float())
        else:
            weights = [torch.full((c,), 1.0 / c) for c in channels]
        for i, w in enumerate(weights):
            self.register_buffer(f"lin{i}", w)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.substitute = vgg is None or lin is None
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        return super().train(False)  # always frozen

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, dtypes=_FLOATS)
        check_tensor("y", y, dtypes=_FLOATS)
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x, y: expected two [B, 3, H, W] tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.shape[-2] < 16 or x.shape[-1] < 16:
            raise ValueError(f"x, y: expected images of at least 16x16 pixels (VGG16's 4 poolings), got {tuple(x.shape)}")
        both = self._taps(torch.cat([x, y]))
        total = 0
        for i, f in enumerate(both):
            f = f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fx, fy = f.chunk(2)
            d = (fx - fy).pow(2)
            total = total + (d * getattr(self, f"lin{i}").view(1, -1, 1, 1).to(d.dtype)).sum(1).mean((1, 2))
        return total
