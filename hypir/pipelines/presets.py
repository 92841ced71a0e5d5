"""The restorer's presets: the pre/post-processing choices around the one step. ``"released"`` is
each choice as the official HYPIR enhancer makes it (XPixelGroup/HYPIR @b61d107,
``enhancer/base.py``), so a released checkpoint gives the released pictures; ``"default"`` is ours,
different in the places :class:`Preset` names (docs/restore.md "Presets" says why)."""
from __future__ import annotations

from dataclasses import dataclass

RELEASED_TILE, RELEASED_STRIDE = 512, 256  # pixels; the UNet and decoder use /8 in latent pixels


@dataclass(frozen=True)
class Preset:
    """The pre/post-processing around the one step, and the defaults of the overridable options.

    Fields (``default`` preset / ``released`` preset):
        upscale_size: output side from ``upscale``: ``round(h * upscale)`` / ``floor`` with torch's
            ``scale_factor`` sampling, as ``F.interpolate(x, scale_factor=upscale)``.
        clamp_resized: clamp every bicubic resize to [0, 1] (overshoot is not an image) / no.
        native: short side at least the model's native size (``sample_size x vae_scale``; 512 px for
            SD2.1), ``round()`` for the long side, antialiased only when shrinking / a short side
            ``<= 512`` is resized to 512, the long side by ``int()``, bicubic with antialiasing
            (torch's antialiased bicubic is Keys' a = -0.5, also when enlarging).
        pad: ``"reflect"`` to the UNet's alignment (64 px: whole UNet tiles) / ``"zeros"`` (0 in
            [-1, 1]) to a multiple of 8.
        tile_weight: blend weight of :func:`hypir_kernels.tiled_apply`: ``"gaussian"`` (symmetric) /
            ``"gaussian_released"`` (y centre at tile/2).
        clamp_decoded: clamp the decoded image before the resize back and the colour fix / no.
        quantize: 8-bit output by ``"round"`` / ``"floor"`` (the release's ``.to(torch.uint8)``).
        channels_last: the VAE and UNet convolutions in NHWC (faster on oneDNN and cuDNN) / torch's
            default layout, as released (the rounding differs).
        fused_group_norm: on the CPU, every GroupNorm (-> SiLU) of the VAE and UNet as one
            :func:`hypir_kernels.group_norm_silu` (3-9x the unfused pair at SD2 VAE shapes; GPU
            unmeasured, so CUDA keeps torch's) / torch's ops, as released.
        posterior, merge, tile, stride, batch_tiles: defaults of the options of the same names
            ("mode", merged, "auto", auto, by memory / "sample", peft adapters kept, 512/256 px
            encoder and 64/32 latent UNet and decoder tiles, one tile per call).
    """

    name: str
    upscale_size: str
    clamp_resized: bool
    native: str
    pad: str
    tile_weight: str
    clamp_decoded: bool
    quantize: str
    channels_last: bool
    fused_group_norm: bool
    posterior: str
    merge: bool
    tile: str | int
    stride: int | None
    batch_tiles: int | None


PRESETS = {
    "default": Preset("default", upscale_size="round", clamp_resized=True, native="model", pad="reflect",
                      tile_weight="gaussian", clamp_decoded=True, quantize="round", channels_last=True,
                      fused_group_norm=True, posterior="mode", merge=True,
                      tile="auto", stride=None, batch_tiles=None),
    "released": Preset("released", upscale_size="floor", clamp_resized=False, native="released", pad="zeros",
                       tile_weight="gaussian_released", clamp_decoded=False, quantize="floor", channels_last=False,
                       fused_group_norm=False, posterior="sample",
                       merge=False, tile=RELEASED_TILE, stride=RELEASED_STRIDE, batch_tiles=1),
}


def get_preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {tuple(PRESETS)}, got {preset!r}")
    return PRESETS[preset]
