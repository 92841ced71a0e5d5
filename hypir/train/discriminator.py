"""HYPIR's discriminator: a frozen feature backbone and a trainable multi-level head of
spectral-normalised convolutions (one logit map per backbone stage).

Backbones (``backbone=``):
* ``"conv"`` -- a small strided conv net with seeded random weights, frozen: for tests and the
  tiny config (a frozen random backbone is a weak but working feature extractor).
* ``"convnext_tiny" | "convnext_small" | "convnext_base" | "convnext_large"`` -- torchvision's
  ConvNeXt (the family of the released open_clip ``convnext_xxlarge``) with ImageNet weights from a
  **local** ``weights`` file (torchvision's state dict, e.g. ``convnext_base-6075fbad.pth``; read with
  ``weights_only=True``). Features after each of the 4 stages.
* ``"timm/<model>"`` -- a timm model with ``stem`` and ``stages`` (ConvNeXt: ``timm/convnext_xxlarge``,
  the released HYPIR backbone) from a **local** ``weights`` file: timm's own state dict, or an
  **open_clip** checkpoint whose image tower is that timm model (keys ``visual.trunk.*``, e.g.
  open_clip's ``convnext_xxlarge`` laion2b ``open_clip_pytorch_model.bin``; CLIP's normalisation is
  then used). Features after each stage. Needs ``timm`` (not open_clip).

Spectral norm: :class:`SpectralNorm` estimates the largest singular value by power iteration, but
only when :func:`update_spectral_norms` is called -- the trainer calls it once per discriminator
step -- so the estimate does not depend on how many forward passes a step makes (gradient
accumulation and data-parallel runs with the same global batch stay identical).
"""
from __future__ import annotations

import importlib
import os

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

CONVNEXTS = ("convnext_tiny", "convnext_small", "convnext_base", "convnext_large")
BACKBONES = ("conv",) + CONVNEXTS + ("timm/<model>",)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_CLIP_MEAN, _CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
_OPEN_CLIP_TRUNK = "visual.trunk."


def is_backbone(name) -> bool:
    return isinstance(name, str) and (name == "conv" or name in CONVNEXTS
                                      or (name.startswith("timm/") and len(name) > len("timm/")))


def needs_weights(name: str) -> bool:
    """Pretrained backbones (all but the test ``conv``) come from a local weights file."""
    return name != "conv"


class SpectralNorm(nn.Module):
    """Parametrization ``W -> W / sigma(W)`` with ``sigma = u^T W v`` from stored vectors."""

    def __init__(self, weight: torch.Tensor, generator: torch.Generator | None = None, eps: float = 1e-12):
        super().__init__()
        out = weight.shape[0]
        self.eps = eps
        u = torch.randn(out, generator=generator, dtype=torch.float32)
        v = torch.randn(weight[0].numel(), generator=generator, dtype=torch.float32)
        self.register_buffer("u", F.normalize(u, dim=0, eps=eps).to(weight))
        self.register_buffer("v", F.normalize(v, dim=0, eps=eps).to(weight))
        self.power_iteration(weight, 15)

    @torch.no_grad()
    def power_iteration(self, weight: torch.Tensor, steps: int = 1) -> None:
        mat = weight.flatten(1)
        for _ in range(steps):
            self.v.copy_(F.normalize(mat.t() @ self.u, dim=0, eps=self.eps))
            self.u.copy_(F.normalize(mat @ self.v, dim=0, eps=self.eps))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        sigma = torch.dot(self.u, weight.flatten(1) @ self.v)
        return weight / sigma


def spectral_norm(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight, generator))
    return module


@torch.no_grad()
def update_spectral_norms(model: nn.Module) -> None:
    """One power iteration for every :class:`SpectralNorm` in ``model``."""
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            for p in m.parametrizations.weight:
                if isinstance(p, SpectralNorm):
                    p.power_iteration(m.parametrizations.weight.original)


class ConvBackbone(nn.Module):
    """Strided 3x3 conv stages (GELU), seeded random weights; features after each stage."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        stages, cin = [], 3
        for w in widths:
            conv = nn.Conv2d(cin, w, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / (9 * cin)) ** 0.5)
                conv.bias.zero_()
            stages.append(nn.Sequential(conv, nn.GELU()))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.channels = tuple(widths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def _import_for(module: str, backbone: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"backbone: {backbone} needs {module} installed (pip install {module}); "
                         f"backbone 'conv' runs without it") from None


class _Normalized(nn.Module):
    def _normalization(self, mean, std) -> None:
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images -> the backbone's input normalisation."""
        return ((x + 1) / 2 - self.mean) / self.std


class ConvNeXtBackbone(_Normalized):
    """torchvision ConvNeXt with local weights; ImageNet normalisation inside."""

    def __init__(self, name: str, weights: str | os.PathLike):
        super().__init__()
        torchvision = _import_for("torchvision", name)
        net = getattr(torchvision.models, name)(weights=None)
        state = _read_state(weights)
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if k.startswith("features.")]
        if missing:
            raise ValueError(f"discriminator.weights: {str(weights)!r} is not torchvision {name} weights; missing "
                             f"{len(missing)} keys ({', '.join(missing[:3])}, ...)")
        self.features = net.features  # stem, stage1, down, stage2, down, stage3, down, stage4
        self.channels = tuple(self.features[i][-1].block[5].out_features for i in (1, 3, 5, 7))
        self._normalization(_IMAGENET_MEAN, _IMAGENET_STD)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.normalize(x)
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in (1, 3, 5, 7):
                feats.append(x)
        return feats


class TimmBackbone(_Normalized):
    """A timm model (``stem`` + ``stages``) with local timm or open_clip weights; see the module doc."""

    def __init__(self, name: str, weights: str | os.PathLike):
        super().__init__()
        timm = _import_for("timm", f"timm/{name}")
        try:
            net = timm.create_model(name, pretrained=False, num_classes=0)
        except RuntimeError as e:  # unknown model name
            raise ValueError(f"backbone: timm/{name}: {e}") from None
        if not (hasattr(net, "stem") and hasattr(net, "stages")):
            raise ValueError(f"backbone: timm/{name} has no stem/stages (a ConvNeXt-like model is expected)")
        state = _read_state(weights)
        open_clip = any(k.startswith(_OPEN_CLIP_TRUNK) for k in state)
        if open_clip:
            state = {k[len(_OPEN_CLIP_TRUNK):]: v for k, v in state.items() if k.startswith(_OPEN_CLIP_TRUNK)}
        own = {k: v for k, v in net.state_dict().items() if k.startswith(("stem.", "stages."))}
        missing = [k for k in own if k not in state]
        shapes = [k for k in own if k in state and state[k].shape != own[k].shape]
        if missing or shapes:
            raise ValueError(f"discriminator.weights: {str(weights)!r} is not timm {name} (or open_clip {name}) weights; "
                             f"missing {len(missing)} keys ({', '.join(missing[:3])}), other shapes {shapes[:3]}")
        net.load_state_dict({k: state[k] for k in own}, strict=False)
        self.stem, self.stages = net.stem, net.stages
        self.channels = tuple(f["num_chs"] for f in net.feature_info[-len(net.stages):])
        if open_clip:
            self._normalization(_CLIP_MEAN, _CLIP_STD)
        else:
            cfg = getattr(net, "pretrained_cfg", {}) or {}
            self._normalization(cfg.get("mean", _IMAGENET_MEAN), cfg.get("std", _IMAGENET_STD))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(self.normalize(x))
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def _read_state(path: str | os.PathLike) -> dict:
    if path is None or not os.path.isfile(path):
        raise FileNotFoundError(f"discriminator.weights: no such file {str(path)!r} (a local torchvision or timm state dict, or an open_clip checkpoint)")
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


class Discriminator(nn.Module):
    """``x [B, 3, H, W]`` in [-1, 1] -> list of ``[B, 1, h_l, w_l]`` logit maps, one per level.

    Only the head trains; the backbone is frozen (``requires_grad`` False, eval mode).

    Args:
        backbone: one of :data:`BACKBONES` (``timm/<model name>`` for timm / open_clip).
        weights: local weights of a pretrained backbone (required for all but ``conv``).
        head_channels: width of each level's hidden spectral-norm conv.
        seed: initialises the head (and the ``conv`` backbone).
    """

    def __init__(self, backbone: str = "conv", weights: str | os.PathLike | None = None, head_channels: int = 64,
                 seed: int = 0, conv_widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        if backbone == "conv":
            self.backbone = ConvBackbone(conv_widths, seed)
        elif backbone in CONVNEXTS:
            self.backbone = ConvNeXtBackbone(backbone, weights)
        elif is_backbone(backbone):
            self.backbone = TimmBackbone(backbone[len("timm/"):], weights)
        else:
            raise ValueError(f"backbone: expected one of {BACKBONES}, got {backbone!r}")
        self.backbone.requires_grad_(False).eval()
        g = torch.Generator().manual_seed(seed + 1)
        heads = []
        for c in self.backbone.channels:
            hidden, out = nn.Conv2d(c, head_channels, 3, padding=1), nn.Conv2d(head_channels, 1, 1)
            for conv in (hidden, out):
                with torch.no_grad():
                    fan_in = conv.weight[0].numel()
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * fan_in ** -0.5)
                    conv.bias.zero_()
            heads.append(nn.Sequential(spectral_norm(hidden, g), nn.LeakyReLU(0.2), spectral_norm(out, g)))
        self.heads = nn.ModuleList(heads)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: never in training mode
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [head(f) for head, f in zip(self.heads, self.backbone(x))]
