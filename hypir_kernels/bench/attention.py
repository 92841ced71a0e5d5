"""Attention benchmark cases, shared by ``python -m hypir_kernels.bench`` and ``benchmarks/``.

* GPU (bf16): the attention shapes of the SD2.1 UNet — head dim 64; 5/10/20/20 heads at
  4096/1024/256/64 query tokens for 512 px (x4 tokens at 1024 px); self-attention (Sk = Sq) and
  cross-attention over 77 text tokens — forward and forward+backward, against PyTorch SDPA
  (flash and memory-efficient backends) and xformers when installed. Figures in TFLOP/s:
  ``4 B H Sq Sk D`` forward, 2.5x that for the backward.
* CPU: a small UNet2DConditionModel (head dim 64, 1024/256 tokens, 77 text tokens) with our
  processor vs diffusers' default ``AttnProcessor2_0``: the processor adds no overhead.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import attention

BATCH = 2
HEAD_DIM = 64
TEXT_TOKENS = 77
# (query tokens at 512 px, heads) per UNet level of SD2.1
SD2_LEVELS = ((4096, 5), (1024, 10), (256, 20), (64, 20))


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    heads: int
    sq: int
    sk: int
    head_dim: int = HEAD_DIM

    def flops(self, backward: bool) -> float:
        fwd = 4.0 * self.batch * self.heads * self.sq * self.sk * self.head_dim
        return fwd * (3.5 if backward else 1.0)  # forward + 2.5x forward for the backward


def sd2_shapes(resolution: int) -> list[Shape]:
    scale = (resolution // 512) ** 2
    out = []
    for tokens, heads in SD2_LEVELS:
        sq = tokens * scale
        out.append(Shape(f"{resolution}px self Sq={sq}", BATCH, heads, sq, sq))
        out.append(Shape(f"{resolution}px cross Sq={sq}", BATCH, heads, sq, TEXT_TOKENS))
    return out


def make_qkv(shape: Shape, dtype=torch.bfloat16, device="cuda", requires_grad=False, seed=0):
    """q, k, v in diffusers' layout ([B, S, H, D] viewed as [B, H, S, D]) and an output gradient."""
    g = torch.Generator(device=device).manual_seed(seed)

    def rand(s):
        t = torch.randn(shape.batch, s, shape.heads, shape.head_dim, generator=g, device=device, dtype=dtype)
        return t.transpose(1, 2).requires_grad_(requires_grad)

    return rand(shape.sq), rand(shape.sk), rand(shape.sk), rand(shape.sq).detach()


def sdpa_with(backend_name: str):
    """``F.scaled_dot_product_attention`` restricted to one SDPA backend ("flash", "efficient", "cudnn")."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    which = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
             "cudnn": SDPBackend.CUDNN_ATTENTION}[backend_name]

    def run(q, k, v):
        with sdpa_kernel(which):
            return F.scaled_dot_product_attention(q, k, v)

    return run


def xformers_attention():
    """xformers ``memory_efficient_attention`` taking [B, H, S, D] (raises ImportError if absent)."""
    import xformers.ops as xops

    def run(q, k, v):
        return xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    return run


def implementations() -> dict:
    """name -> fn(q, k, v) for the GPU comparison; anchors that are not installed, or installed but
    unable to run here (an xformers wheel built for another torch has no usable CUDA operator), are
    left out -- see :func:`unavailable`."""
    impls = {"ours": attention,  # backend="auto": the per-shape choice users get
             "ours_triton": lambda q, k, v: attention(q, k, v, backend="triton"),
             "sdpa_flash": sdpa_with("flash"), "sdpa_efficient": sdpa_with("efficient")}
    if torch.cuda.is_available() and torch.cuda.get_device_capability() >= (9, 0):
        impls["sdpa_cudnn"] = sdpa_with("cudnn")
    try:
        xf = xformers_attention()
        if torch.cuda.is_available():  # probe once on a tiny input
            q = torch.zeros(1, 1, 8, 64, device="cuda", dtype=torch.float16)
            xf(q, q, q)
        impls["xformers"] = xf
    except Exception as e:  # noqa: BLE001 -- any failure means "cannot run here", reported, never fatal
        _UNAVAILABLE["xformers"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return impls


_UNAVAILABLE: dict[str, str] = {}


def unavailable() -> dict[str, str]:
    """Anchors :func:`implementations` left out, with why."""
    return dict(_UNAVAILABLE)


def step(fn, q, k, v, go, backward: bool):
    out = fn(q, k, v)
    if backward:
        out.backward(go)
    return out


# ----------------------------------------------------------------------------------------------
# CPU: UNet with our processor vs the default processor

UNET_CONFIG = dict(
    sample_size=32, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(64, 128),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=64, attention_head_dim=(1, 2), norm_num_groups=32,
)


def make_unet(processor: str):
    """The CPU benchmark UNet with ``processor`` "ours" or "default" (AttnProcessor2_0)."""
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0

    from ..diffusers import use_attention

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**UNET_CONFIG).eval()
    if processor == "ours":
        use_attention(unet)
    else:
        unet.set_attn_processor(AttnProcessor2_0())
    return unet


def unet_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(BATCH, 4, 32, 32, generator=g), torch.tensor([10, 700][:BATCH]),
            torch.randn(BATCH, TEXT_TOKENS, 64, generator=g))


def run_unet(unet, inputs):
    with torch.no_grad():
        return unet(*inputs).sample
