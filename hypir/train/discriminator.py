"""HYPIR's discriminator: a frozen feature backbone and a trainable multi-level head of
spectral-normalised layers. Two heads (``head=``):

* ``"released"`` (default) -- the released HYPIR's ``MultiLevelDConv(level=4, down=2)``
  (``HYPIR/model/D.py``, blocks from vision-aided-gan): one logit map for every backbone stage but
  the last, each ``BlurPool(pad 2) -> SN conv3x3 stride 2 (no padding) -> LeakyReLU(0.2) ->
  BlurPool(pad 1) -> SN conv1x1 stride 2`` (BlurPool: the 4x4 binomial ``[1, 3, 3, 1]`` filter,
  stride 1, zero padding), plus a logit per image from the backbone's **pooled** embedding:
  ``SN linear -> LeakyReLU(0.2) -> SN linear`` (``[B, 1]``). On open_clip ConvNeXt-XXL that is
  maps on the 384/768/1536-channel stages and the 1024-d image embedding: 4 levels.
* ``"multistage"`` -- this project's earlier head: ``SN conv3x3 -> LeakyReLU(0.2) -> SN conv1x1``
  on every stage (one logit map per stage, same resolution as the stage), no pooled level.

Backbones (``backbone=``):
* ``"conv"`` -- a small strided conv net with seeded random weights, frozen: for tests and the
  tiny config (a frozen random backbone is a weak but working feature extractor).
* ``"convnext_tiny" | "convnext_small" | "convnext_base" | "convnext_large"`` -- torchvision's
  ConvNeXt (the family of the released open_clip ``convnext_xxlarge``) with ImageNet weights from a
  **local** ``weights`` file (torchvision's state dict, e.g. ``convnext_base-6075fbad.pth``; read with
  ``weights_only=True``). Features after each of the 4 stages; pooled: average pool + the
  classifier's LayerNorm.
* ``"timm/<model>"`` -- a timm model with ``stem`` and ``stages`` (ConvNeXt: ``timm/convnext_xxlarge``,
  the released HYPIR backbone) from a **local** ``weights`` file: timm's own state dict, or an
  **open_clip** checkpoint whose image tower is that timm model (keys ``visual.trunk.*``, e.g.
  open_clip's ``convnext_xxlarge`` laion2b ``open_clip_pytorch_model.bin``; CLIP's normalisation is
  then used). Features after each stage; pooled: timm's head before the classifier (pool + norm),
  then open_clip's image projection ``visual.head.proj`` when the checkpoint has one (the released
  1024-d embedding). Needs ``timm`` (not open_clip).

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
HEADS = ("released", "multistage")
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
        with torch.autocast(weight.device.type, enabled=False):  # sigma in the weight's precision, also under bf16 autocast
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
        self.pooled_channels = widths[-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def pool(self, last: torch.Tensor) -> torch.Tensor:
        """The last stage's features ``[B, C, h, w]`` -> ``[B, pooled_channels]`` (global average)."""
        return last.mean((2, 3))


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
        missing = [k for k in missing if k.startswith(("features.", "classifier.0."))]
        if missing:
            raise ValueError(f"discriminator.weights: {str(weights)!r} is not torchvision {name} weights; missing "
                             f"{len(missing)} keys ({', '.join(missing[:3])}, ...)")
        self.features = net.features  # stem, stage1, down, stage2, down, stage3, down, stage4
        self.channels = tuple(self.features[i][-1].block[5].out_features for i in (1, 3, 5, 7))
        self.pool_head = nn.Sequential(net.avgpool, net.classifier[0], nn.Flatten(1))
        self.pooled_channels = self.channels[-1]
        self._normalization(_IMAGENET_MEAN, _IMAGENET_STD)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.normalize(x)
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in (1, 3, 5, 7):
                feats.append(x)
        return feats

    def pool(self, last: torch.Tensor) -> torch.Tensor:
        return self.pool_head(last)


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
        state = full = _read_state(weights)
        open_clip = any(k.startswith(_OPEN_CLIP_TRUNK) for k in state)
        if open_clip:
            state = {k[len(_OPEN_CLIP_TRUNK):]: v for k, v in state.items() if k.startswith(_OPEN_CLIP_TRUNK)}
        own = {k: v for k, v in net.state_dict().items() if k.startswith(("stem.", "stages.", "head."))}
        missing = [k for k in own if k not in state]
        shapes = [k for k in own if k in state and state[k].shape != own[k].shape]
        if missing or shapes:
            raise ValueError(f"discriminator.weights: {str(weights)!r} is not timm {name} (or open_clip {name}) weights; "
                             f"missing {len(missing)} keys ({', '.join(missing[:3])}), other shapes {shapes[:3]}")
        net.load_state_dict({k: state[k] for k in own}, strict=False)
        self.stem, self.stages = net.stem, net.stages
        self.norm_pre, self.head = net.norm_pre, net.head  # forward_head(pre_logits=True): pool + norm
        self.channels = tuple(f["num_chs"] for f in net.feature_info[-len(net.stages):])
        self.proj = None  # open_clip's image projection (the released pooled embedding)
        proj = {k[len("visual.head.proj."):]: v for k, v in full.items() if k.startswith("visual.head.proj.")} if open_clip else {}
        if "weight" in proj:
            self.proj = nn.Linear(proj["weight"].shape[1], proj["weight"].shape[0], bias="bias" in proj)
            self.proj.load_state_dict(proj)
        self.pooled_channels = self.proj.out_features if self.proj is not None else net.num_features
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

    def pool(self, last: torch.Tensor) -> torch.Tensor:
        x = self.head(self.norm_pre(last), pre_logits=True)
        return self.proj(x) if self.proj is not None else x


def _read_state(path: str | os.PathLike) -> dict:
    if path is None or not os.path.isfile(path):
        raise FileNotFoundError(f"discriminator.weights: no such file {str(path)!r} (a local torchvision or timm state dict, or an open_clip checkpoint)")
    from ..files import read_state_dict

    return read_state_dict(path, "discriminator.weights")


def _seeded(layer: nn.Module, g: torch.Generator) -> nn.Module:
    """N(0, 1 / fan_in) weights, zero bias, then spectral norm (the head's layers)."""
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * layer.weight[0].numel() ** -0.5)
        layer.bias.zero_()
    return spectral_norm(layer, g)


class BlurPool(nn.Module):
    """Stride-1 depthwise 4x4 binomial blur (``[1, 3, 3, 1]`` outer product / 64), zero padding ``pad``
    on every side: ``[B, C, H, W] -> [B, C, H + 2 pad - 3, W + 2 pad - 3]``."""

    def __init__(self, channels: int, pad: int):
        super().__init__()
        a = torch.tensor([1.0, 3.0, 3.0, 1.0])
        self.register_buffer("filt", (torch.outer(a, a) / 64).expand(channels, 1, 4, 4).contiguous())
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (self.pad,) * 4), self.filt.to(x.dtype), groups=x.shape[1])


class ReleasedHead(nn.Module):
    """The released head (see the module doc): ``(feats, pooled)`` -> ``len(feats) - 1`` logit maps
    ``[B, 1, h, w]`` and the pooled logit ``[B, 1]``."""

    MIN_MAP = 4  # a level's feature map must be at least 4x4 (blur -> stride-2 conv -> blur -> stride 2)

    def __init__(self, channels: tuple[int, ...], pooled_channels: int, width: int, g: torch.Generator):
        super().__init__()
        self.maps = nn.ModuleList(
            nn.Sequential(BlurPool(c, 2), _seeded(nn.Conv2d(c, width, 3, stride=2), g), nn.LeakyReLU(0.2),
                          BlurPool(width, 1), _seeded(nn.Conv2d(width, 1, 1, stride=2), g))
            for c in channels[:-1])
        self.pooled = nn.Sequential(_seeded(nn.Linear(pooled_channels, width), g), nn.LeakyReLU(0.2),
                                    _seeded(nn.Linear(width, 1), g))

    def forward(self, feats: list[torch.Tensor], pooled: torch.Tensor) -> list[torch.Tensor]:
        return [head(f) for head, f in zip(self.maps, feats)] + [self.pooled(pooled.float())]


class MultistageHead(nn.ModuleList):
    """One ``SN conv3x3 -> LeakyReLU(0.2) -> SN conv1x1`` logit map per stage."""

    def __init__(self, channels: tuple[int, ...], width: int, g: torch.Generator):
        super().__init__(
            nn.Sequential(_seeded(nn.Conv2d(c, width, 3, padding=1), g), nn.LeakyReLU(0.2), _seeded(nn.Conv2d(width, 1, 1), g))
            for c in channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [head(f) for head, f in zip(self, feats)]


class Discriminator(nn.Module):
    """``x [B, 3, H, W]`` in [-1, 1] -> list of logits, one tensor per level: ``[B, 1, h_l, w_l]``
    maps, and (released head) a last ``[B, 1]`` from the pooled embedding.

    Only the head trains; the backbone is frozen (``requires_grad`` False, eval mode).

    Args:
        backbone: one of :data:`BACKBONES` (``timm/<model name>`` for timm / open_clip).
        weights: local weights of a pretrained backbone (required for all but ``conv``).
        head_channels: width of each level's hidden layer (released: 512).
        seed: initialises the head (and the ``conv`` backbone).
        head: one of :data:`HEADS` (see the module doc).
    """

    def __init__(self, backbone: str = "conv", weights: str | os.PathLike | None = None, head_channels: int = 64,
                 seed: int = 0, conv_widths: tuple[int, ...] = (16, 32, 64), head: str = "released"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head: expected one of {HEADS}, got {head!r}")
        if backbone == "conv":
            self.backbone = ConvBackbone(conv_widths, seed)
        elif backbone in CONVNEXTS:
            self.backbone = ConvNeXtBackbone(backbone, weights)
        elif is_backbone(backbone):
            self.backbone = TimmBackbone(backbone[len("timm/"):], weights)
        else:
            raise ValueError(f"backbone: expected one of {BACKBONES}, got {backbone!r}")
        self.backbone.requires_grad_(False).eval()
        self.head = head
        g = torch.Generator().manual_seed(seed + 1)
        if head == "released":
            self.heads = ReleasedHead(self.backbone.channels, self.backbone.pooled_channels, head_channels, g)
        else:
            self.heads = MultistageHead(self.backbone.channels, head_channels, g)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: never in training mode
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.backbone(x)
        if self.head == "multistage":
            return self.heads(feats)
        for i, f in enumerate(feats[:-1]):
            if min(f.shape[-2:]) < ReleasedHead.MIN_MAP:
                stride = x.shape[-1] // f.shape[-1]
                raise ValueError(f"x: {x.shape[-2]}x{x.shape[-1]} images give a {f.shape[-2]}x{f.shape[-1]} feature map "
                                 f"at level {i}; the released head needs at least {ReleasedHead.MIN_MAP}x{ReleasedHead.MIN_MAP} "
                                 f"(images of at least {ReleasedHead.MIN_MAP * stride} px a side with this backbone)")
        return self.heads(feats, self.backbone.pool(feats[-1]))
