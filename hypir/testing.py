"""Small models for tests, benchmarks and the tiny configs: the components of each backbone (SD2.x,
SDXL, SD3/SD3.5, Flux.1) with the real classes and layouts -- VAEs, UNets and transformers with
every HYPIR LoRA target, CLIP and T5 text encoders, CLIP BPE and T5 unigram tokenizers, the
backbones' schedules and VAE scalings -- reduced only in width. Nothing is downloaded."""
from __future__ import annotations

import json
import os
import string
from pathlib import Path

import torch

from .models.lora import LoraSpec, add_lora
from .models.components import Components, build_components


_SYMBOLS = string.ascii_lowercase + string.digits + ".,!?'"
_MERGES = (("t", "h"), ("th", "e</w>"), ("a", "n"), ("i", "n"), ("e", "r"))
_BOS = 2 * len(_SYMBOLS) + len(_MERGES)  # <|startoftext|>, then <|endoftext|>


def write_tokenizer(path: str | os.PathLike) -> Path:
    """A CLIP BPE tokenizer (``vocab.json`` + ``merges.txt``, the released layout) over lowercase
    letters, digits and a few common merges; returns the directory."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    symbols, merges = list(_SYMBOLS), _MERGES
    vocab: dict[str, int] = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    (path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}))
    return path


def load_tokenizer(path: str | os.PathLike):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(path), local_files_only=True)


_T5_SPECIAL = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5's vocabulary


def write_t5_tokenizer(path: str | os.PathLike, max_length: int = 32) -> Path:
    """A T5 tokenizer (``T5TokenizerFast``: a unigram model with T5's metaspace pre-tokenizer and
    ``</s>`` appended, saved as ``tokenizer.json``) over lowercase letters, digits and word-initial
    letters; ``max_length`` tokens (real T5s: 512); returns the directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5TokenizerFast

    pieces = [(s, 0.0) for s in _T5_SPECIAL] + [("\u2581", -2.0)]
    pieces += [("\u2581" + c, -2.5) for c in string.ascii_lowercase] + [(c, -3.0) for c in _SYMBOLS]
    model = Tokenizer(models.Unigram(pieces, unk_id=2))
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    model.decoder = decoders.Metaspace()
    tok = T5TokenizerFast(tokenizer_object=model, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                          extra_ids=0, model_max_length=max_length)
    tok.save_pretrained(str(path))
    return Path(path)


def load_t5_tokenizer(path: str | os.PathLike):
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(str(path), local_files_only=True)


def t5_config(width: int, vocab_size: int, layers: int = 2, heads: int = 2) -> dict:
    """A T5 v1.1 encoder (gated GELU, as SD3's and Flux's T5-XXL) at width ``width``."""
    return dict(vocab_size=vocab_size, d_model=width, d_kv=width // heads, d_ff=2 * width, num_layers=layers,
                num_heads=heads, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
                decoder_start_token_id=0, is_encoder_decoder=False)


def sd2_configs(unet_width: int = 32, vae_width: int = 8, text_width: int = 32, heads: int = 2, sample_size: int = 8) -> dict:
    """Configs of SD2.1-base's architecture at reduced width: UNet blocks ``w, 2w, 4w, 4w`` (3 cross-
    attention levels, linear projections, 2 layers per block), VAE blocks ``v, 2v, 4v, 4v``,
    a 2-layer CLIP text encoder of width ``text_width`` (the UNet's cross-attention width).
    ``sample_size`` is the UNet's native latent size (SD2.1-base: 64, i.e. 512 px; the restorer
    enlarges smaller images to it), small by default so tests stay small."""
    groups = min(32, unet_width)
    return dict(
        unet=dict(
            sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(unet_width, 2 * unet_width, 4 * unet_width, 4 * unet_width),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=text_width, attention_head_dim=(heads, 2 * heads, 4 * heads, 4 * heads),
            use_linear_projection=True, norm_num_groups=groups,
        ),
        vae=dict(
            in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(vae_width, 2 * vae_width, 4 * vae_width, 4 * vae_width),
            layers_per_block=2, latent_channels=4, norm_num_groups=min(32, vae_width), sample_size=512,
            scaling_factor=0.18215,
        ),
        text_encoder=dict(
            hidden_size=text_width, intermediate_size=2 * text_width, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, vocab_size=_BOS + 2, projection_dim=text_width, hidden_act="gelu",
            bos_token_id=_BOS, eos_token_id=_BOS + 1, pad_token_id=_BOS + 1,
        ),
    )


def tiny_components(tokenizer_dir: str | os.PathLike, seed: int = 0, **widths) -> Components:
    """Random-weight SD2-architecture components (see :func:`sd2_configs`)."""
    cfg = sd2_configs(**widths)
    return build_components(cfg["vae"], cfg["unet"], cfg["text_encoder"], load_tokenizer(write_tokenizer(tokenizer_dir)),
                            seed=seed)


def sdxl_configs(unet_width: int = 32, vae_width: int = 8, text_width: int = 32, heads: int = 2,
                 sample_size: int = 8) -> dict:
    """Configs of SDXL's architecture at reduced width: UNet blocks ``w, 2w, 4w`` (no attention at the
    first level, 1 and 2 transformer layers below), the added text/time embedding (pooled text of the
    second encoder + 6 micro-conditioning numbers), cross-attention over both text encoders' states
    side by side; SDXL's VAE scaling 0.13025; two 2-layer CLIP text encoders, the second with a
    projection (SDXL's OpenCLIP-bigG slot)."""
    sd2 = sd2_configs(unet_width, vae_width, text_width, heads, sample_size)
    time_dim = 8
    unet = dict(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(unet_width, 2 * unet_width, 4 * unet_width),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2), cross_attention_dim=2 * text_width,
        attention_head_dim=(heads, 2 * heads, 4 * heads), use_linear_projection=True, norm_num_groups=min(32, unet_width),
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=text_width + 6 * time_dim,
    )
    return dict(unet=unet, vae={**sd2["vae"], "scaling_factor": 0.13025}, text_encoder=sd2["text_encoder"],
                text_encoder_2={**sd2["text_encoder"], "projection_dim": text_width})


def tiny_sdxl_components(tokenizer_dir: str | os.PathLike, seed: int = 0, **widths) -> Components:
    """Random-weight SDXL-architecture components (see :func:`sdxl_configs`)."""
    cfg = sdxl_configs(**widths)
    tokenizer = load_tokenizer(write_tokenizer(tokenizer_dir))
    return build_components(cfg["vae"], cfg["unet"], cfg["text_encoder"], tokenizer, seed=seed,
                            text_encoder_2=cfg["text_encoder_2"], tokenizer_2=load_tokenizer(tokenizer_dir))


def randomize_lora(unet: torch.nn.Module, std: float = 0.02, seed: int = 0) -> None:
    """Give every LoRA ``B`` (zero after peft's gaussian init) random values, so the adapter
    changes the output the way a trained one does."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)


def trained_like_unet(components: Components, spec: LoraSpec | None = None, seed: int = 0) -> Components:
    """Add the HYPIR adapter (``spec``; default rank 8 on the denoiser's targets) with random
    non-zero weights to ``components.denoiser``."""
    from .models.lora import targets_for

    add_lora(components.denoiser, spec or LoraSpec(rank=8, targets=targets_for(components.denoiser)))
    randomize_lora(components.denoiser, seed=seed)
    return components


def transformer_config(backbone: str, width: int = 32, layers: int = 2, heads: int = 2, text_width: int = 32,
                       pooled_width: int | None = None, sample_size: int = 16) -> dict:
    """Config of an SD3 (``SD3Transformer2DModel``) or Flux.1 (``FluxTransformer2DModel``) denoiser at
    reduced width (``width = heads * head dim``): the real classes, every block type (Flux: ``layers``
    double-stream and ``layers`` single-stream blocks), 16 latent channels. ``text_width``: the text
    states' width; ``pooled_width`` the pooled text's (default ``text_width``); ``sample_size``: SD3's
    native latent size."""
    head_dim = width // heads
    pooled_width = pooled_width or text_width
    if backbone == "sd3":
        return dict(sample_size=sample_size, patch_size=2, in_channels=16, out_channels=16, num_layers=layers,
                    attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=text_width,
                    caption_projection_dim=width, pooled_projection_dim=pooled_width, pos_embed_max_size=32)
    if backbone == "flux":  # packed 2x2 latents: 64 input channels; RoPE axes sum to the head dim
        rope = (head_dim - 2 * (3 * head_dim // 8), 3 * head_dim // 8, 3 * head_dim // 8)
        return dict(patch_size=1, in_channels=64, num_layers=layers, num_single_layers=layers,
                    attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=text_width,
                    pooled_projection_dim=pooled_width, guidance_embeds=True, axes_dims_rope=rope)
    raise ValueError(f"backbone: expected 'sd3' or 'flux', got {backbone!r}")


# The 16-channel VAEs' latent statistics (their released configs).
FLOW_VAE_SCALING = {"sd3": (1.5305, 0.0609), "flux": (0.3611, 0.1159)}


def flow_configs(backbone: str, unet_width: int = 32, vae_width: int = 8, text_width: int = 32, heads: int = 2,
                 sample_size: int = 8, layers: int = 2, t5_vocab: int | None = None, t5: bool = True) -> dict:
    """Configs of SD3's or Flux.1's architecture at reduced width: the transformer (``unet_width``
    wide, ``layers`` blocks of each kind), the 16-channel VAE without quant convs and with the
    backbone's shift/scale (``vae_width``; Flux's native size in its ``sample_size``), 2-layer CLIP
    encoders of width ``text_width`` and a T5 encoder (SD3: width ``2 * text_width``, the joint
    width both CLIPs' states are padded to; Flux: ``text_width``); ``t5=False``: SD3 without T5."""
    sd2 = sd2_configs(unet_width, vae_width, text_width, heads, sample_size)
    scaling, shift = FLOW_VAE_SCALING[backbone]
    vae = {**sd2["vae"], "latent_channels": 16, "use_quant_conv": False, "use_post_quant_conv": False,
           "scaling_factor": scaling, "shift_factor": shift, "sample_size": sample_size * 8}
    clip = {**sd2["text_encoder"], "projection_dim": text_width}
    vocab = t5_vocab or len(_T5_SPECIAL) + 1 + len(string.ascii_lowercase) + len(_SYMBOLS)
    if backbone == "sd3":
        joint = 2 * text_width
        return dict(vae=vae, text_encoder=clip, text_encoder_2=clip,
                    text_encoder_3=t5_config(joint, vocab) if t5 else None,
                    transformer=transformer_config("sd3", unet_width, layers, heads, joint, 2 * text_width, sample_size))
    return dict(vae=vae, text_encoder=sd2["text_encoder"], text_encoder_2=t5_config(text_width, vocab),
                transformer=transformer_config("flux", unet_width, layers, heads, text_width, text_width))


def tiny_backbone_components(backbone: str, tokenizer_dir: str | os.PathLike, seed: int = 0, layers: int = 2,
                             t5: bool = True, **widths) -> Components:
    """Random-weight components of ``backbone`` ("sd2", "sdxl", "sd3", "flux") at reduced width
    (:func:`sd2_configs`, :func:`sdxl_configs`, :func:`flow_configs`); tokenizers written under
    ``tokenizer_dir``. ``layers``: transformer blocks (SD3/Flux)."""
    if backbone == "sd2":
        return tiny_components(tokenizer_dir, seed, **widths)
    if backbone == "sdxl":
        return tiny_sdxl_components(tokenizer_dir, seed, **widths)
    if backbone not in ("sd3", "flux"):
        raise ValueError(f"backbone: expected one of 'sd2', 'sdxl', 'sd3', 'flux', got {backbone!r}")
    cfg = flow_configs(backbone, layers=layers, t5=t5, **widths)
    tokenizer_dir = Path(tokenizer_dir)
    clip = load_tokenizer(write_tokenizer(tokenizer_dir / "clip"))
    t5_tok = load_t5_tokenizer(write_t5_tokenizer(tokenizer_dir / "t5"))
    if backbone == "sd3":
        return build_components(cfg["vae"], None, cfg["text_encoder"], clip, seed=seed, backbone="sd3",
                                text_encoder_2=cfg["text_encoder_2"], tokenizer_2=load_tokenizer(tokenizer_dir / "clip"),
                                transformer=cfg["transformer"], text_encoder_3=cfg["text_encoder_3"],
                                tokenizer_3=t5_tok if t5 else None)
    return build_components(cfg["vae"], None, cfg["text_encoder"], clip, seed=seed, backbone="flux",
                            text_encoder_2=cfg["text_encoder_2"], tokenizer_2=t5_tok, transformer=cfg["transformer"])


def tiny_transformer(backbone: str, seed: int = 0, **sizes) -> torch.nn.Module:
    """A random-weight SD3 or Flux denoiser from :func:`transformer_config`."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel

    torch.manual_seed(seed)
    cls = SD3Transformer2DModel if backbone == "sd3" else FluxTransformer2DModel
    return cls(**transformer_config(backbone, **sizes))


def transformer_inputs(backbone: str, batch: int = 2, latent: int = 8, tokens: int = 7, text_width: int = 32,
                       seed: int = 0) -> dict:
    """Keyword inputs of one call of :func:`tiny_transformer`'s model on ``latent`` x ``latent``
    16-channel latents (Flux: packed into ``(latent / 2)^2`` tokens of 64 channels, with its RoPE ids
    and guidance), at HYPIR's default noise level."""
    from .models.flow import FlowOneStep

    g = torch.Generator().manual_seed(seed)
    text = torch.randn(batch, tokens, text_width, generator=g)
    pooled = torch.randn(batch, text_width, generator=g)
    timestep = FlowOneStep(backbone=backbone).timestep(batch)
    if backbone == "sd3":
        return dict(hidden_states=torch.randn(batch, 16, latent, latent, generator=g), encoder_hidden_states=text,
                    pooled_projections=pooled, timestep=timestep)
    side = latent // 2
    ids = torch.zeros(side, side, 3)
    ids[..., 1], ids[..., 2] = torch.arange(side)[:, None], torch.arange(side)[None, :]
    return dict(hidden_states=torch.randn(batch, side * side, 64, generator=g), encoder_hidden_states=text,
                pooled_projections=pooled, timestep=timestep, img_ids=ids.reshape(-1, 3),
                txt_ids=torch.zeros(tokens, 3), guidance=torch.full((batch,), 3.5))
