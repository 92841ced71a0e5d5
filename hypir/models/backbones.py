"""Which diffusion backbone a local diffusers directory holds (issue 24).

HYPIR runs and trains on SD2.x here and restores with SDXL; the paper's other backbones (SD3/SD3.5,
Flux.1) are in progress (docs/backbones.md). A directory of one of those is recognised and refused
with that said, instead of failing on a missing ``unet/``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

SUPPORTED = ("sd2", "sdxl")
# model_index.json's pipeline class -> backbone
PIPELINES = {
    "StableDiffusionPipeline": "sd2", "StableDiffusionImg2ImgPipeline": "sd2", "StableDiffusionUpscalePipeline": "sd2",
    "StableDiffusionXLPipeline": "sdxl", "StableDiffusionXLImg2ImgPipeline": "sdxl",
    "StableDiffusion3Pipeline": "sd3", "StableDiffusion3Img2ImgPipeline": "sd3",
    "FluxPipeline": "flux", "FluxImg2ImgPipeline": "flux",
}
TRANSFORMERS = {"SD3Transformer2DModel": "sd3", "FluxTransformer2DModel": "flux"}
NAMES = {"sd2": "SD2.x", "sdxl": "SDXL", "sd3": "SD3/SD3.5", "flux": "Flux.1"}


def _class_name(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None


def detect_backbone(path: str | os.PathLike) -> str | None:
    """``"sd2"``, ``"sdxl"``, ``"sd3"`` or ``"flux"`` for a diffusers directory, or None when it
    does not say: from ``model_index.json``'s pipeline class, else from the denoiser's config (a
    ``transformer/`` of SD3's or Flux's class; a ``unet/`` with SDXL's text-time embedding)."""
    path = Path(path)
    pipeline = _class_name(path / "model_index.json")
    if pipeline in PIPELINES:
        return PIPELINES[pipeline]
    transformer = _class_name(path / "transformer" / "config.json")
    if transformer in TRANSFORMERS:
        return TRANSFORMERS[transformer]
    try:
        unet = json.loads((path / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(unet, dict):
        return None
    return "sdxl" if unet.get("addition_embed_type") == "text_time" else "sd2"


def check_supported(path: str | os.PathLike, what: str = "base_model") -> None:
    """Raise a ``ValueError`` naming ``what`` when ``path`` holds a backbone this version cannot run."""
    found = detect_backbone(path)
    if found is not None and found not in SUPPORTED:
        raise ValueError(f"{what}: {str(path)!r} holds a {NAMES[found]} model; HYPIR runs on SD2.x and SDXL bases "
                         f"here (SD3 and Flux.1 are in progress: docs/backbones.md)")
