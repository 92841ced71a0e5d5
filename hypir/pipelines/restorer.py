"""HYPIR one-step restoration (released-checkpoint compatible), tiled under a memory budget.

    restorer = Restorer.from_pretrained("sd21-base/", weights="HYPIR_sd2.pth")
    out = restorer(Image.open("lq.png"), upscale=4)          # PIL in, PIL out

One step as released: ``z = E(lq) * scaling_factor``; ``eps = unet(z, model_t, text)``;
``x0 = (z - sqrt(1 - abar[coeff_t]) eps) / sqrt(abar[coeff_t])``; ``D(x0 / scaling_factor)``.
Around it: bicubic upscale (short side at least the model's native size, restored, then resized to
the requested size), padding to the UNet's alignment, the three passes (VAE encode, UNet, VAE
decode) through :func:`hypir_kernels.tiled_apply` with Gaussian blending, crop, and the 5-level
wavelet colour fix against the upscaled input.

Two presets (:data:`hypir.pipelines.presets.PRESETS`) set the pre/post-processing around that step. ``"released"`` does
each step as the official HYPIR enhancer (XPixelGroup/HYPIR ``enhancer/base.py``) does it, so a
released checkpoint gives the released pictures; ``"default"`` differs in six places where we
think ours is better (:class:`Preset` names them; docs/restore.md "Presets" shows why).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hypir_kernels import tiled_apply

from ..files import read_state_dict
from ..models import lora as hypir_lora
from ..models.backbones import FLUX_GUIDANCE, TextConditioning, make_backbone
from ..models.components import Components, build_components, load_components
from ..models.sd2 import keep_channels_last, load_encoder
from ..models.texture import has_texture_embedding, texture_richness
from .colorfix import wavelet_color_fix
from .images import from_tensor, to_tensor
from .memory import MemoryModel, TilePlan, default_batch, default_budget, fit_memory_model, plan_auto, plan_fixed
from .devices import resolve_device, resolve_dtype
from .presets import RELEASED_TILE, Preset, get_preset

PASSES = ("encode", "unet", "decode")


@dataclass
class RestoreInfo:
    """What the last call did: the plan of each pass and the sizes involved."""

    input_size: tuple[int, int]
    output_size: tuple[int, int]
    work_size: tuple[int, int]
    plans: dict[str, TilePlan]
    texture: float | None
    seconds: dict[str, float]  # wall time of each pass (encode, unet, decode)


class Restorer:
    """HYPIR restoration pipeline (diffusers-style: :meth:`from_pretrained`, ``__call__``).

    Args:
        components: the backbone's parts (:class:`hypir.models.components.Components`: SD2.x,
            SDXL, SD3/SD3.5 or Flux.1); the denoiser carries the HYPIR LoRA (see :meth:`from_components`).
        device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
        dtype: "auto" (bf16 on CUDA and on CPUs with native bf16, else fp32; see
            :func:`resolve_dtype`), "fp32", "bf16", "fp16" or a torch dtype.
        model_t: the timestep the denoiser is called at (released: 200; SD3/Flux: ``sigma = model_t / 1000``).
        coeff_t: the timestep whose ``abar`` turns the prediction into ``x0`` (released: 200;
            SD3/Flux: must equal ``model_t``).
        guidance: Flux.1 [dev]'s guidance embedding value (default 3.5, diffusers'); others ignore it.
        offload_text: keep the text encoders on the CPU (in fp32), moving the prompt's conditioning
            to the device: for large text encoders (SD3's and Flux's T5) on a small GPU.
        offload_vae: keep the VAE on the CPU between its passes (moved to the device for the
            encode and the decode pass only), so the denoiser's pass has the device to itself.
        preset: "default" or "released" (:class:`Preset`): the pre/post-processing, and the
            defaults of ``merge``, ``posterior`` and of the tiling options of :meth:`__call__`.
        merge: merge the LoRA into the base weights (:func:`hypir.models.lora.merge_and_unload`:
            exact up to one rounding to ``dtype``; the adapters are then gone); False keeps the
            adapters (to switch them). None: the preset's (default: True; released: False).
        attention: "default" (diffusers' SDPA processor) or "hypir"
            (:func:`hypir_kernels.diffusers.use_attention`). The default is the faster one on the
            H100 measurement (../shared/gpu-runs: merged UNet 53 ms vs 63 ms with ours).
        posterior: "mode" (the VAE posterior mean, deterministic) or "sample" (as released; the
            SD VAE's posterior std is ~1e-3 of the latent scale, drawn from ``seed``, one draw per
            tile). None: the preset's (default: "mode"; released: "sample").
    """

    def __init__(self, components: Components, *, device: str | torch.device = "auto", dtype="auto",
                 model_t: int = 200, coeff_t: int = 200, merge: bool | None = None, attention: str = "default",
                 posterior: str | None = None, preset: str | Preset = "default", guidance: float = FLUX_GUIDANCE,
                 offload_text: bool = False, offload_vae: bool = False):
        for name, value in (("offload_text", offload_text), ("offload_vae", offload_vae)):
            if not isinstance(value, bool):
                raise ValueError(f"{name}: expected True or False, got {value!r}")
        self.preset = get_preset(preset)
        merge = self.preset.merge if merge is None else merge
        posterior = self.preset.posterior if posterior is None else posterior
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        extra = {"guidance": guidance} if components.backbone == "flux" else {}
        self.backbone = make_backbone(components, model_t, coeff_t, **extra)
        if attention not in ("default", "hypir"):
            raise ValueError(f"attention: expected 'default' or 'hypir', got {attention!r}")
        if posterior not in ("mode", "sample"):
            raise ValueError(f"posterior: expected 'mode' or 'sample', got {posterior!r}")
        self.components = components
        self.model_t, self.coeff_t, self.posterior = model_t, coeff_t, posterior
        self.merged = False
        denoiser = components.denoiser
        if merge and _has_lora(denoiser):
            hypir_lora.merge_and_unload(denoiser)  # in the load precision, before any cast
            self.merged = True
        self.offload_text, self.offload_vae = offload_text, offload_vae
        for m in [components.vae, denoiser] + ([] if offload_text else self.backbone.text_encoders):
            m.to(self.device, self.dtype).eval().requires_grad_(False)
        for m in self.backbone.text_encoders if offload_text else []:
            m.to("cpu", torch.float32).eval().requires_grad_(False)
        if offload_vae:
            components.vae.to("cpu")
        # channels_last: oneDNN (CPU) and cuDNN run these convolutions faster in NHWC (measured on
        # the 2-core CPU at the benchmark's widths: VAE decode 8.2 -> 6.2 s, encode 4.5 -> 3.6 s).
        # The released preset keeps torch's default layout: on the tiny test model, channels-last
        # rounding alone moved a 520 px restoration up to 5.5/255 away from the release's.
        components.vae.to(memory_format=self._layout)
        denoiser.to(memory_format=self._layout)
        unet = components.unet
        if self.preset.channels_last and unet is not None:  # and keep it so past the attention blocks (diffusers copies to NCHW there)
            keep_channels_last(unet)
        if self.preset.fused_group_norm and self.device.type == "cpu":
            from hypir_kernels.diffusers import use_group_norm_silu

            use_group_norm_silu(components.vae)
            if unet is not None:
                use_group_norm_silu(unet)
        if attention == "hypir":
            if unet is None:
                raise ValueError(f"attention: 'hypir' replaces the UNet's attention processors; "
                                 f"the {components.backbone} transformer keeps diffusers' ('default')")
            from hypir_kernels.diffusers import use_attention

            use_attention(unet)
        self._text_cache: dict[str, TextConditioning] = {}
        self._memory_models: dict[str, MemoryModel] = {}
        self._warned_texture = False
        self.last: RestoreInfo | None = None

    @property
    def _layout(self) -> torch.memory_format:
        return torch.channels_last if self.preset.channels_last else torch.contiguous_format

    # ---- construction ---------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, base_model: str | os.PathLike, weights: str | os.PathLike | dict | None = None, *,
                        lora: hypir_lora.LoraSpec | None = None, encoder: str | os.PathLike | None = None,
                        **kwargs) -> Restorer:
        """Build from a local diffusers directory (SD2.1-base, SDXL, SD3/SD3.5 or Flux.1:
        :mod:`hypir.models.components`) and a HYPIR checkpoint
        (``.safetensors`` or ``.pth``, the released format; rank read from the file unless
        ``lora`` says otherwise); ``encoder``: a stage-1 (degradation pre-removal) encoder file
        that replaces the VAE's encoder. Other keyword arguments as the constructor."""
        source = None
        if weights is not None and not isinstance(weights, dict):  # a bad file fails before the model loads
            source, weights = weights, hypir_lora.read_checkpoint(weights)
        if encoder is not None:
            read_state_dict(encoder, "encoder")
        components = load_components(base_model)
        if weights is not None:
            hypir_lora.load_checkpoint(components.denoiser, weights, lora, source=source)
        return cls.from_components(components, encoder=encoder, **kwargs)

    @classmethod
    def from_components(cls, components: Components, weights: str | os.PathLike | dict | None = None, *,
                        lora: hypir_lora.LoraSpec | None = None, encoder: str | os.PathLike | None = None,
                        **kwargs) -> Restorer:
        """Build from in-memory components. With ``weights`` the LoRA adapter is added and loaded
        (mismatched keys raise); without, the denoiser is used as it is (with or without an adapter).
        With ``encoder`` the VAE's encoder is replaced (:func:`hypir.models.sd2.load_encoder`)."""
        if weights is not None:
            hypir_lora.load_checkpoint(components.denoiser, weights, lora)
        if encoder is not None:
            load_encoder(components.vae, encoder)
        return cls(components, **kwargs)

    @classmethod
    def from_configs(cls, vae: dict, unet: dict, text_encoder: dict, tokenizer, **kwargs) -> Restorer:
        """Random-weight components from configs (tests, benchmarks); see :func:`build_components`."""
        return cls(build_components(vae, unet, text_encoder, tokenizer), **kwargs)

    # ---- the model pieces -------------------------------------------------------------------

    @property
    def has_texture_control(self) -> bool:
        return has_texture_embedding(self.components.denoiser)

    @torch.inference_mode()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """``[1, L, D]`` text states of ``prompt`` the denoiser attends to (cached;
        :meth:`hypir.models.backbones.Backbone.encode_text`). SD2: the encoder's last states;
        SDXL: both encoders' penultimate states side by side, as diffusers' SDXL pipeline."""
        return self._conditioning(prompt).text

    def _conditioning(self, prompt: str) -> TextConditioning:
        """The prompt's conditioning on the device in the run dtype, cached per prompt."""
        if not isinstance(prompt, str):
            raise ValueError(f"prompt: expected a str, got {type(prompt).__name__}")
        if prompt not in self._text_cache:
            with torch.inference_mode():
                self._text_cache[prompt] = self.backbone.encode_text(prompt).to(self.device, self.dtype)
        return self._text_cache[prompt]

    def _encode_fn(self, generator: torch.Generator | None):
        vae, to_latent = self.components.vae, self.backbone.to_latent

        def encode(x: torch.Tensor) -> torch.Tensor:
            dist = vae.encode(x.to(self.dtype).contiguous(memory_format=self._layout)).latent_dist
            if self.posterior == "mode":
                return to_latent(dist.mode())
            eps = torch.randn(dist.mean.shape, generator=generator, dtype=torch.float32).to(dist.mean)
            return to_latent(dist.mean + dist.std * eps)

        return encode

    def _unet_fn(self, conditioning: TextConditioning, texture: torch.Tensor | None):
        """The one step on a latent tile (the "unet" pass: the denoiser of any backbone)."""
        denoiser, backbone = self.components.denoiser, self.backbone

        def run(z: torch.Tensor) -> torch.Tensor:
            return backbone(denoiser, z.contiguous(memory_format=self._layout), conditioning, texture)

        return run

    def _decode_fn(self):
        vae, from_latent = self.components.vae, self.backbone.from_latent
        return lambda z: vae.decode(from_latent(z).contiguous(memory_format=self._layout)).sample

    # ---- memory planning ----------------------------------------------------------------------

    def memory_model(self, pass_name: str) -> MemoryModel:
        """The fitted peak-memory model of a pass (probed once per restorer on small inputs)."""
        if pass_name not in self._memory_models:
            c = self.components
            if pass_name == "encode":
                unit, channels, fn = 8 * c.vae_scale, 3, self._encode_fn(None)
            else:
                unit, channels = 8, self.backbone.latent_channels
                fn = self._unet_fn(self._conditioning(""), self._probe_texture()) if pass_name == "unet" else self._decode_fn()

            def make_input(s):
                return torch.randn(1, channels, s, s, device=self.device, dtype=self.dtype)

            with torch.inference_mode(), self._vae_on_device(pass_name):
                self._memory_models[pass_name] = fit_memory_model(fn, make_input, (unit, 2 * unit, 3 * unit), self.device)
        return self._memory_models[pass_name]

    def _probe_texture(self):
        return torch.zeros(1, device=self.device) if self.has_texture_control else None

    def plan(self, pass_name: str, height: int, width: int, tile="auto", stride: int | None = None,
             max_memory: float | None = None, batch_tiles: int | None = None) -> TilePlan:
        """The tile plan of a pass over an input of ``height`` x ``width`` *pixels* (the padded image
        the encoder sees); ``tile``/``stride`` in pixels as :meth:`__call__` takes them."""
        if pass_name not in PASSES:
            raise ValueError(f"pass_name: expected one of {PASSES}, got {pass_name!r}")
        if batch_tiles is not None and (isinstance(batch_tiles, bool) or not isinstance(batch_tiles, int) or batch_tiles < 1):
            raise ValueError(f"batch_tiles: expected None or an int >= 1, got {batch_tiles!r}")
        c = self.components
        budget = self._budget(max_memory)
        batch = batch_tiles if batch_tiles is not None else default_batch(self.device)
        if pass_name == "encode":  # pixels: tiles on a coarse grid, strides whole latent pixels
            scale, align, step = 1, 8 * c.vae_scale, c.vae_scale
        else:  # latent pixels: UNet tiles must line up with its down-sampling
            scale, align, step = c.vae_scale, c.unet_align if pass_name == "unet" else 8, 1
        h, w = height // scale, width // scale
        model = self.memory_model(pass_name)
        max_tile = self.backbone.max_latent if pass_name == "unet" else None  # SD3's position embedding
        if tile == "auto":
            auto = plan_auto(model, h, w, align, step, budget, batch, max_tile)
            if auto.tile is None or stride is None:
                return auto
            if stride % c.vae_scale or not 0 < stride // scale <= auto.tile:
                raise ValueError(f"stride: expected a multiple of {c.vae_scale} pixels in (0, {auto.tile * scale}] "
                                 f"(the auto tile), got {stride!r}")
            return plan_fixed(model, h, w, auto.tile, stride // scale, budget, batch)
        tile_px, stride_px = _check_tile(tile, stride, c.vae_scale * c.unet_align, c.vae_scale)
        if max_tile is not None and tile_px // scale > max_tile:
            raise ValueError(f"tile: {tile_px} px is more than this {c.backbone} denoiser takes "
                             f"({max_tile * scale} px: its position embedding)")
        return plan_fixed(model, h, w, tile_px // scale, stride_px // scale, budget, batch)

    def _budget(self, max_memory: float | None) -> int:
        if max_memory is None:
            return default_budget(self.device)
        if isinstance(max_memory, bool) or not isinstance(max_memory, (int, float)) or not max_memory > 0:
            raise ValueError(f"max_memory: expected a positive number of bytes, got {max_memory!r}")
        return int(max_memory)

    # ---- restoration --------------------------------------------------------------------------

    def __call__(self, image, *, upscale: float = 4, prompt: str = "", noise: float = 0.0, texture=None,
                 seed: int = 0, tile=None, stride: int | None = None, max_memory: float | None = None,
                 batch_tiles: int | None = None, progress: bool = False):
        """Restore one image.

        Args:
            image: a PIL image, or a float tensor ``[3, H, W]`` / ``[1, 3, H, W]`` in ``[0, 1]``.
            upscale: output size = round(upscale x input size) per side (released preset: floor).
            prompt: text condition (released default: empty).
            noise: generativity-fidelity control: Gaussian noise of this std added to the encoded
                latent before the UNet (0 = the released behaviour).
            texture: texture richness (a number, see :func:`hypir.texture_richness`) or None /
                "auto" (the richness of the upscaled input). Ignored, with a warning when given as
                a number, by a checkpoint without the texture embedding.
            seed: seeds the noise (and the posterior sample); drawn on the CPU, so the same seed
                gives the same draw on every device.
            tile: "auto" (largest tiles within ``max_memory``; one tile when the image fits) or a
                tile size in pixels, a multiple of the UNet alignment (64 for SD2; the released
                plan is ``tile=512, stride=256``, the UNet and decoder then use 64/32 latents).
                None: the preset's (default: "auto"; released: 512 with stride 256).
            stride: step between tiles in pixels (default: half the tile for explicit tiles, a
                quarter overlap for auto).
            max_memory: bytes a pass may use (default 80 % of free device memory or of RAM).
            batch_tiles: tiles per call (default: as many as ``max_memory`` allows on CUDA, one on
                the CPU, where batches of tiles run slower; released preset: one, as released).
            progress: progress bars per tiled pass.

        Returns the restored image, as a PIL RGB image for a PIL input (8 bits by the preset's
        ``quantize``), else a float32 tensor of the input's rank in ``[0, 1]`` on the input's
        device. :attr:`last` describes the run.
        """
        x, kind = to_tensor(image)
        if tile is None:
            tile, stride = self.preset.tile, self.preset.stride if stride is None else stride
        if batch_tiles is None:
            batch_tiles = self.preset.batch_tiles
        if isinstance(upscale, bool) or not isinstance(upscale, (int, float)) or not upscale > 0 or not math.isfinite(upscale):
            raise ValueError(f"upscale: expected a positive number, got {upscale!r}")
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0 or not math.isfinite(noise):
            raise ValueError(f"noise: expected a finite number >= 0, got {noise!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ValueError(f"seed: expected an int in [0, 2**63), got {seed!r}")
        out = self._restore(x.to(self.device, torch.float32), float(upscale), prompt, float(noise), texture, seed,
                            tile, stride, max_memory, batch_tiles, progress)
        return from_tensor(out, kind, image, self.preset.quantize)

    @torch.inference_mode()
    def _restore(self, x, upscale, prompt, noise, texture, seed, tile, stride, max_memory, batch_tiles, progress):
        c, preset = self.components, self.preset
        lq = self._upscale(x, upscale)
        H, W = lq.shape[-2:]
        work = self._native(lq)
        wh, ww = work.shape[-2:]
        if preset.pad == "zeros":  # as released: zeros (0 in [-1, 1]) to a multiple of 8 (SD3/Flux: 16, even latents)
            m = 8 if c.transformer is None else c.vae_scale * c.unet_align
            padded = F.pad(work * 2 - 1, (0, -ww % m, 0, -wh % m))
        else:  # reflect to whole UNet tiles: no artificial edge for the networks to restore
            align = c.vae_scale * c.unet_align
            padded = _pad(work * 2 - 1, -wh % align, -ww % align)
        Hp, Wp = padded.shape[-2:]

        generator = torch.Generator().manual_seed(seed)
        plans = {p: self.plan(p, Hp, Wp, tile, stride, max_memory, batch_tiles) for p in PASSES}
        seconds: dict[str, float] = {}
        z = self._run(self._encode_fn(generator), padded, plans["encode"], 1 / c.vae_scale, progress, seconds, "encode")
        if noise > 0:
            z = self.backbone.add_noise(z, torch.randn(z.shape, generator=generator, dtype=torch.float32).to(z), noise)
        richness = self._texture(texture, lq)
        tex = torch.tensor([richness], device=self.device) if richness is not None else None
        x0 = self._run(self._unet_fn(self._conditioning(prompt), tex), z, plans["unet"], 1, progress, seconds, "unet")
        y = self._run(self._decode_fn(), x0, plans["decode"], c.vae_scale, progress, seconds, "decode")
        y = (y[:, :, :wh, :ww].float() + 1) / 2
        if preset.clamp_decoded:
            y = y.clamp_(0, 1)
        if preset.native == "released":  # the release always resizes back, antialiased
            y = F.interpolate(y, size=(H, W), mode="bicubic", antialias=True)
        elif (wh, ww) != (H, W):
            y = _resize(y, H, W)
        out = wavelet_color_fix(y, lq).clamp_(0, 1)
        self.last = RestoreInfo(tuple(x.shape[-2:]), (H, W), (wh, ww), plans, richness, seconds)
        return out

    def _upscale(self, x: torch.Tensor, upscale: float) -> torch.Tensor:
        """The bicubic upscale to the output size."""
        h, w = x.shape[-2:]
        if self.preset.upscale_size == "floor":  # F.interpolate(scale_factor=...): floor sizes, 1/scale sampling
            if math.floor(h * upscale) < 1 or math.floor(w * upscale) < 1:
                raise ValueError(f"upscale: {upscale} x {h}x{w} is less than one pixel")
            up = F.interpolate(x, scale_factor=upscale, mode="bicubic")
            return up.clamp_(0, 1) if self.preset.clamp_resized else up
        return _resize(x, max(1, round(h * upscale)), max(1, round(w * upscale)))

    def _native(self, lq: torch.Tensor) -> torch.Tensor:
        """Enlarge to at least the model's native size (short side); the output is resized back."""
        H, W = lq.shape[-2:]
        if self.preset.native == "released":  # HYPIR's resize_at_least(patch_size=512), applied when <= 512
            size = RELEASED_TILE
            if min(H, W) > size:
                return lq
            if H == W:
                new = (size, size)
            elif H < W:
                new = (size, int(W * (size / H)))
            else:
                new = (int(H * (size / W)), size)
            return F.interpolate(lq, size=new, mode="bicubic", antialias=True)
        grow = max(1.0, self.backbone.native_size / min(H, W))
        return lq if grow == 1.0 else _resize(lq, round(H * grow), round(W * grow))

    @contextlib.contextmanager
    def _vae_on_device(self, pass_name: str):
        """With ``offload_vae``: the VAE on the device for its own passes, back on the CPU after."""
        move = self.offload_vae and pass_name in ("encode", "decode") and self.device.type != "cpu"
        if move:
            self.components.vae.to(self.device)
        try:
            yield
        finally:
            if move:
                self.components.vae.to("cpu")

    def _run(self, fn, x, plan: TilePlan, scale, progress, seconds: dict, name: str):
        with self._vae_on_device(name):
            return self._run_pass(fn, x, plan, scale, progress, seconds, name)

    def _run_pass(self, fn, x, plan: TilePlan, scale, progress, seconds: dict, name: str):
        start = time.perf_counter()
        x = x.to(self.dtype)
        if plan.tile is None:
            out = fn(x)
        else:
            out = tiled_apply(fn, x, plan.tile, plan.stride, scale=scale, weight=self.preset.tile_weight,
                              batch_tiles=plan.batch, progress=progress)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds[name] = time.perf_counter() - start
        return out

    def _texture(self, texture, lq) -> float | None:
        explicit = texture is not None and texture != "auto"
        if explicit and (isinstance(texture, bool) or not isinstance(texture, (int, float)) or not texture >= 0
                         or not math.isfinite(texture)):
            raise ValueError(f"texture: expected None, 'auto' or a finite number >= 0, got {texture!r}")
        if not self.has_texture_control:
            if explicit and not self._warned_texture:
                warnings.warn("texture: this checkpoint has no texture-richness embedding; the value is ignored",
                              stacklevel=5)
                self._warned_texture = True
            return None
        return float(texture) if explicit else float(texture_richness(lq)[0])


def _has_lora(unet) -> bool:
    return any("lora_" in name for name, _ in unet.named_parameters())


def _check_tile(tile, stride, align: int, vae_scale: int) -> tuple[int, int]:
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < align or tile % align:
        raise ValueError(f"tile: expected 'auto' or a positive multiple of {align} pixels, got {tile!r}")
    if stride is None:
        stride = tile // 2
    if isinstance(stride, bool) or not isinstance(stride, int) or not 0 < stride <= tile or stride % vae_scale:
        raise ValueError(f"stride: expected a multiple of {vae_scale} pixels in (0, tile={tile}], got {stride!r}")
    return tile, stride


def _resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic resize, antialiased when shrinking, clamped to [0, 1] (the default preset's)."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    shrink = height < x.shape[-2] or width < x.shape[-1]
    return F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=shrink).clamp_(0, 1)


def _pad(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)
