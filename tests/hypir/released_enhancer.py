"""The official HYPIR enhancer (XPixelGroup/HYPIR @b61d107, ``HYPIR/enhancer/base.py`` ``enhance``,
``sd2.py`` ``forward_generator``, ``utils/common.py`` ``make_tiled_fn``), restated from our reading
of it for the tests: the oracle that ``Restorer(preset="released")`` must reproduce. It shares no
code with the restorer: its own tiling (accumulate with a count canvas, the release's sliding
windows and tile Gaussian), the scheduler's own ``step``, its own wavelet colour fix."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sliding_windows(h: int, w: int, size: int, stride: int) -> list[tuple[int, int]]:
    def axis(n):
        starts = list(range(0, n - size + 1, stride))
        if (n - size) % stride:
            starts.append(n - size)
        return starts

    return [(y, x) for y in axis(h) for x in axis(w)]


def tile_gaussian(size: int) -> torch.Tensor:
    """The release's weights: var 0.01, x centre (size - 1) / 2, y centre size / 2."""
    p = torch.arange(size, dtype=torch.float64)
    gx = torch.exp(-((p - (size - 1) / 2) ** 2) / size**2 / 0.02)
    gy = torch.exp(-((p - size / 2) ** 2) / size**2 / 0.02)
    return (gy[:, None] * gx[None, :]).float()


def tiled(fn, x, size, stride, scale, out_channels):
    b, _, h, w = x.shape
    out = torch.zeros(b, out_channels, int(h * scale), int(w * scale))
    count = torch.zeros_like(out)
    weights = tile_gaussian(int(size * scale))
    for y, x0 in sliding_windows(h, w, size, stride):
        oy, ox, n = int(y * scale), int(x0 * scale), int(size * scale)
        out[..., oy:oy + n, ox:ox + n] += fn(x[..., y:y + size, x0:x0 + size]).float() * weights
        count[..., oy:oy + n, ox:ox + n] += weights
    return out / count


def _blur(x, radius):
    k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    return F.conv2d(F.pad(x, (radius,) * 4, mode="replicate"), k[None, None].repeat(3, 1, 1, 1), groups=3, dilation=radius)


def _decompose(x):
    high = torch.zeros_like(x)
    for i in range(5):
        low = _blur(x, 2**i)
        high += x - low
        x = low
    return high, x


def resize_at_least(x, size):
    h, w = x.shape[-2:]
    if h == w:
        new = (size, size)
    elif h < w:
        new = (size, int(w * (size / h)))
    else:
        new = (int(h * (size / w)), size)
    return F.interpolate(x, size=new, mode="bicubic", antialias=True)


@torch.no_grad()
def enhance(components, lq: torch.Tensor, upscale: int, prompt: str = "", patch_size: int = 512, stride: int = 256,
            model_t: int = 200, coeff_t: int = 200, posterior: str = "mode") -> tuple[torch.Tensor, torch.Tensor]:
    """``lq [1, 3, h, w]`` in [0, 1] -> (``pt`` result in [0, 1], ``pil`` result as uint8 [H, W, 3]),
    fp32; ``posterior`` "mode" replaces the release's ``latent_dist.sample()`` by the mean."""
    vae, unet, sch = components.vae, components.unet, components.scheduler
    lq = F.interpolate(lq, scale_factor=upscale, mode="bicubic")
    ref = lq
    h0, w0 = lq.shape[2:]
    if min(h0, w0) <= patch_size:
        lq = resize_at_least(lq, patch_size)
    lq = lq * 2 - 1
    h1, w1 = lq.shape[2:]
    ph, pw = (h1 + 7) // 8 * 8 - h1, (w1 + 7) // 8 * 8 - w1
    lq = F.pad(lq, (0, pw, 0, ph), mode="constant", value=0)

    def encode(t):
        d = vae.encode(t).latent_dist
        return d.mode() if posterior == "mode" else d.sample()

    z_lq = tiled(encode, lq, patch_size, stride, 1 / 8, vae.config.latent_channels)
    tok = components.tokenizer
    ids = tok([prompt], max_length=tok.model_max_length, padding="max_length", truncation=True, return_tensors="pt").input_ids
    text = components.text_encoder(ids)[0]
    sf = vae.config.scaling_factor

    def generator(z):
        z_in = z * sf
        eps = unet(z_in, torch.full((z.shape[0],), model_t, dtype=torch.long), encoder_hidden_states=text).sample
        return sch.step(eps, coeff_t, z_in).pred_original_sample / sf

    z = tiled(generator, z_lq, patch_size // 8, stride // 8, 1, z_lq.shape[1])
    x = tiled(lambda t: vae.decode(t).sample.float(), z, patch_size // 8, stride // 8, 8, 3)
    x = (x[..., :h1, :w1] + 1) / 2
    x = F.interpolate(x, size=(h0, w0), mode="bicubic", antialias=True)
    x = _decompose(x)[0] + _decompose(ref)[1]
    pil = (x * 255.0).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0)
    return x.clamp(0, 1), pil
