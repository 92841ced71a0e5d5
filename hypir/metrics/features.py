"""Feature networks for FID.

* :class:`InceptionFeatures` -- the standard FID Inception-v3 (2048-d pool features) from a **local**
  weights file in the pytorch-fid / torch-fidelity format (``weights-inception-2015-12-05-6726825d.pth``,
  the file torchmetrics' FID uses), through the ``torch-fidelity`` package; nothing is downloaded.
* :class:`DigitFeatures` -- since Inception weights cannot be downloaded here, a small classifier we
  train ourselves on labelled data that ships in an installed package (scikit-learn's digits,
  :func:`hypir.rsd.data.digits`); its accuracy on held-out digits is reported with it. FID computed
  with it is **not** comparable with Inception FIDs -- say so.

    net, accuracy = train_digit_features(size=32)
    save_features(net, "digits-features.safetensors", accuracy=accuracy)
    fid = fid_score(load_features("digits-features.safetensors"), samples, reference)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .fid import feature_statistics, frechet_distance


class DigitFeatures(nn.Module):
    """A 3-stage CNN on ``[B, C, S, S]`` images in [-1, 1]; :meth:`features` is the 128-d
    penultimate layer (FID's features), ``forward`` the 10 class logits."""

    def __init__(self, channels: int = 1, width: int = 32, dim: int = 128, classes: int = 10):
        super().__init__()
        self.config = dict(channels=channels, width=width, dim=dim, classes=classes)
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, dim), nn.GELU())
        self.head = nn.Linear(dim, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_tensor(x) and x.dim() == 4 and x.shape[1] == self.config["channels"]):
            raise ValueError(f"x: expected [B, {self.config['channels']}, S, S] images, got "
                             f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class InceptionFeatures(nn.Module):
    """FID's Inception-v3 from a local weights file (see the module doc); ``features`` takes
    ``[B, 1 or 3, H, W]`` images in [-1, 1] (quantised to 8 bits and resized to 299 inside, as FID does)."""

    def __init__(self, weights: str | os.PathLike):
        super().__init__()
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError:
            raise ValueError("weights: Inception features need torch-fidelity installed (pip install torch-fidelity)") from None
        from ..files import FileFormatError, read_state_dict

        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights: no such file {str(path)!r} (the FID Inception weights, "
                                    f"weights-inception-2015-12-05-6726825d.pth)")
        state = read_state_dict(path, "weights")  # a plain state dict: also proves the pickle safe for torch-fidelity's load
        if "Mixed_7c.branch_pool.conv.weight" not in state:
            raise FileFormatError("weights", path, "the FID Inception-v3 state dict",
                                  f"a state dict of {len(state)} tensors without its Mixed_7c keys")
        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_tensor(x) and x.dim() == 4 and x.shape[1] in (1, 3)):
            raise ValueError(f"x: expected [B, 1 or 3, H, W] images, got "
                             f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
        u8 = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).expand(-1, 3, -1, -1)
        return self.net(u8.contiguous())[0]


def train_digit_features(size: int = 32, steps: int = 1500, batch: int = 128, seed: int = 0,
                         progress: bool = True) -> tuple[DigitFeatures, float]:
    """Train :class:`DigitFeatures` on the 1500 training digits (random 1-pixel-per-8 shifts);
    returns the network (eval mode) and its accuracy on the 297 held-out digits."""
    from tqdm.auto import tqdm

    from ..rsd.data import digits

    x, labels = digits(size, "train")
    xv, lv = digits(size, "heldout")
    torch.manual_seed(seed)
    net = DigitFeatures()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps) if steps >= 10 else None
    g = torch.Generator().manual_seed(seed)
    shift = max(size // 8, 1)
    for _ in tqdm(range(steps), desc="digit features", disable=not progress):
        idx = torch.randint(len(x), (batch,), generator=g)
        dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=g))
        xb = torch.roll(x[idx], (dy, dx), dims=(2, 3))
        loss = F.cross_entropy(net(xb), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(xv).argmax(1) == lv).float().mean())
    return net, accuracy


def save_features(net: DigitFeatures, path: str | os.PathLike, **info) -> Path:
    """Weights + config (+ ``info`` such as the accuracy) in one safetensors file."""
    from ..files import save_tensors

    return save_tensors(path, net.state_dict(), metadata={"config": json.dumps(net.config), "info": json.dumps(info)})


def load_features(path: str | os.PathLike) -> DigitFeatures:
    """A network written by :func:`save_features` (eval mode; ``.info`` holds what was saved with it)."""
    from ..files import FileFormatError, check_keys, read_state_dict, safetensors_metadata

    wanted = "a feature network written by save_features"
    meta = safetensors_metadata(path, "features", wanted)
    if "config" not in meta:
        raise FileFormatError("features", path, wanted, "a safetensors file without its config")
    net = DigitFeatures(**json.loads(meta["config"]))
    state = read_state_dict(path, "features")
    check_keys(state, {k: tuple(v.shape) for k, v in net.state_dict().items()}, "features", path, wanted)
    net.load_state_dict(state)
    net.info = json.loads(meta.get("info", "{}"))
    return net.eval()


@torch.no_grad()
def fid_score(net, images: torch.Tensor, reference: torch.Tensor, batch: int = 500) -> float:
    """FID between two image sets ``[N, C, S, S]`` in [-1, 1] with ``net.features`` (a
    :class:`DigitFeatures` or :class:`InceptionFeatures`)."""
    def feats(x):
        return torch.cat([net.features(x[i:i + batch].float()) for i in range(0, len(x), batch)])

    return frechet_distance(*feature_statistics(feats(images)), *feature_statistics(feats(reference)))
