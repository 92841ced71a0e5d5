"""Stored outputs of the HYPIR release's own degradation (``expected/released_degradation.safetensors``)
for the draws our ``preset="released"`` makes, so the preset is held to the release's code in the
tests without that code being here.

    python tests/hypir/released_degradation_expected.py /path/to/HYPIR          # regenerate
    python tests/hypir/released_degradation_expected.py /path/to/HYPIR PHOTOS [BATCHES]  # compare on photos

(``/path/to/HYPIR``: a checkout of XPixelGroup/HYPIR @b61d107; its modules need opencv and
torchvision, polars is stubbed: it only reads parquet listings.) For each case it runs
``hypir.data.degrade(..., record=draws)`` with the released preset, logging the noise it draws
(the unit Gaussian fields of ``hypir_kernels.add_noise``, the ``torch.poisson`` counts), then the
release's ``RealESRGANBatchTransform`` (``HYPIR/dataset/batch_transform.py``, queue off) on the
same images with every draw fixed to ours: our kernels in the batch (as its dataset hands them
over), its ``random``/``np.random`` calls answered from our scales, modes and coins, its
``torch.rand`` from our noise strengths and grey flags, its ``torch.randn``/``torch.poisson`` from
our noise, its JPEG qualities (``Tensor.uniform_``) from ours. Everything else -- blur, resize,
noise arithmetic, DiffJPEG, sinc, order, resize back, rounding, USM -- is the release's own code.

With PHOTOS (a folder of images) it prints, on 256 px crops of them, the same-draw difference and
the PSNR(LQ, GT) distribution of our preset against the release's own random draws (docs/train.md,
"Training degradation presets").
"""
from __future__ import annotations

import contextlib
import math
import random
import sys
import types
from pathlib import Path

import numpy as np
import torch

STORED = Path(__file__).with_name("expected") / "released_degradation.safetensors"
CASES = [(0, 3, 64, 96), (1, 2, 48, 48), (2, 3, 64, 64), (3, 2, 96, 64), (4, 3, 64, 80), (5, 2, 64, 64), (7, 2, 48, 48),
         (18, 2, 64, 48)]  # seed, B, H, W
HQ_STORED = (1, 3, 7)  # the cases whose sharpened ground truth is stored too (float32: the file's bulk)


def jpeg_case() -> tuple[torch.Tensor, torch.Tensor]:
    """``[2, 3, 64, 128]`` 8-bit images of flat 16 px tiles -- odd grey levels and random colours,
    whose DC coefficients fall on exact quantiser ties at quality 50 -- and their float qualities,
    for the release's DiffJPEG on its own."""
    g = torch.Generator().manual_seed(0)
    colours = torch.randint(0, 256, (32, 3), generator=g).float()
    colours[:16] = (torch.arange(97, 160, 4).float())[:, None].expand(16, 3)
    tiles = colours.view(4, 8, 3).permute(2, 0, 1).repeat_interleave(16, 1).repeat_interleave(16, 2)
    x = torch.stack([tiles, tiles.flip(-1)]) / 255
    return x, torch.tensor([50.0, 90.0])


def image_checksum(x: torch.Tensor) -> str:
    """The inputs are regenerated in the tests; this says they are the images the outputs were made from."""
    return f"{float(x.double().sum()):.9e},{float((x.double() ** 2).sum()):.9e}"


def case_images(seed: int, b: int, h: int, w: int) -> torch.Tensor:
    """``[b, 3, h, w]`` generated photographs-like images (:func:`hypir.data.generated_image`)."""
    from hypir.data import generated_image

    return torch.stack([generated_image(max(h, w), 1000 * seed + i)[:, :h, :w] for i in range(b)])


def release_transform(root: str | Path, cfg):
    """The release's ``RealESRGANBatchTransform`` configured as ``cfg`` (its sd2_train.yaml values)."""
    sys.modules.setdefault("polars", types.ModuleType("polars"))
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from HYPIR.dataset.batch_transform import RealESRGANBatchTransform

    s1, s2 = cfg.stage1, cfg.stage2
    return RealESRGANBatchTransform(
        hq_key="hq", extra_keys=["txt"], use_sharpener=cfg.usm, queue_size=0,
        resize_prob=list(s1.resize_prob), resize_range=list(s1.resize_range), gray_noise_prob=s1.gray_noise_prob,
        gaussian_noise_prob=s1.gaussian_noise_prob, noise_range=list(s1.noise_range),
        poisson_scale_range=list(s1.poisson_scale_range), jpeg_range=list(s1.jpeg_range),
        second_blur_prob=s2.blur_prob, stage2_scale=cfg.scale, resize_prob2=list(s2.resize_prob),
        resize_range2=list(s2.resize_range), gray_noise_prob2=s2.gray_noise_prob,
        gaussian_noise_prob2=s2.gaussian_noise_prob, noise_range2=list(s2.noise_range),
        poisson_scale_range2=list(s2.poisson_scale_range), jpeg_range2=list(s2.jpeg_range), resize_back=True)


@contextlib.contextmanager
def recording_noise(log: list):
    """Log the noise :func:`hypir.data.degrade` draws: per ``hypir_kernels.add_noise`` call the
    unit field (the same Philox stream with sigma 1), per ``torch.poisson`` call the counts."""
    import hypir_kernels

    add_noise, poisson = hypir_kernels.add_noise, torch.poisson

    def logged_add_noise(x, sigma, seed, *, offsets=None):
        log.append(("randn", add_noise(torch.zeros_like(x), 1.0, seed, offsets=offsets)))
        return add_noise(x, sigma, seed, offsets=offsets)

    def logged_poisson(rates, *a, **k):
        out = poisson(rates, *a, **k)
        log.append(("poisson", out))
        return out

    hypir_kernels.add_noise, torch.poisson = logged_add_noise, logged_poisson
    try:
        yield log
    finally:
        hypir_kernels.add_noise, torch.poisson = add_noise, poisson


@contextlib.contextmanager
def _scripted(rec: dict, noise_log: list, cfg):
    """Answer the release's random calls, in its order, from our recorded draws."""
    def updown(scale):
        return "up" if scale > 1 else ("down" if scale < 1 else "keep")

    choices = [updown(rec["scale1"]), updown(rec["scale2"])]
    modes = [rec["mode1"], rec["mode2"], rec["final_mode"]]
    yes, no = 0.0, 1.0 - 1e-12
    uniforms, rands = [], []  # np.random.uniform / torch.rand, in call order
    for stage, st in ((1, cfg.stage1), (2, cfg.stage2)):
        scale = rec[f"scale{stage}"]
        if stage == 2:
            uniforms.append(yes if rec["kernel2"] is not None else no)
        if scale != 1:
            uniforms.append(scale)
        noise = rec[f"noise{stage}"]
        uniforms.append(yes if noise["kind"] == "gaussian" else no)
        lo, hi = st.noise_range if noise["kind"] == "gaussian" else st.poisson_scale_range
        units = 255.0 if noise["kind"] == "gaussian" else 1.0  # the release draws sigma in 8-bit units
        rands.append(((noise["strength"] * units - lo) / (hi - lo) if hi > lo else noise["strength"] * 0))
        rands.append(torch.where(noise["gray"], 0.0, 1.0).double())
    uniforms.append(yes if rec["order"] == "resize_first" else no)
    qualities = [rec["quality1"], rec["quality2"]]
    randn = [t for kind, t in noise_log if kind == "randn"]
    counts = [t for kind, t in noise_log if kind == "poisson"]
    saved = (random.choices, random.choice, np.random.uniform, torch.Tensor.uniform_, torch.rand, torch.randn,
             torch.poisson)

    def fill(t, *_a, **_k):
        return t.copy_(qualities.pop(0).to(t))

    def scripted_randn(*size, dtype=None, device=None, **_k):
        size = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        # ours draws the colour field first, the release the grey one: take the one of this shape
        i = next(i for i, t in enumerate(randn[:2]) if t.numel() == math.prod(size))
        return randn.pop(i).reshape(size).to(dtype=dtype or torch.float32, device=device)

    def scripted_poisson(rates, *_a, **_k):
        i = next(i for i, t in enumerate(counts[:2]) if t.shape == rates.shape)  # grey [B,1] or colour [B,3]
        return counts.pop(i).to(rates)

    random.choices = lambda *a, **k: [choices.pop(0)]
    random.choice = lambda *a, **k: modes.pop(0)
    np.random.uniform = lambda *a, **k: uniforms.pop(0)
    torch.Tensor.uniform_ = fill
    torch.rand = lambda *a, dtype=None, device=None, **k: rands.pop(0).to(dtype=dtype or torch.float32, device=device)
    torch.randn, torch.poisson = scripted_randn, scripted_poisson
    try:
        yield
    finally:
        (random.choices, random.choice, np.random.uniform, torch.Tensor.uniform_, torch.rand, torch.randn,
         torch.poisson) = saved
    left = [x for x in (choices, modes, uniforms, qualities, rands, randn, counts) if x]
    if left:
        raise AssertionError(f"the release made other draws than recorded: {left}")


def ours_with_draws(gt: torch.Tensor, seed: int, cfg) -> tuple[torch.Tensor, torch.Tensor, dict, list]:
    """``(lq, target, draws, noise log)`` of our ``degrade`` with ``cfg``."""
    from hypir.data import degrade

    rec: dict = {}
    with recording_noise([]) as log:
        lq, target = degrade(gt, seed, cfg, record=rec)
    return lq, target, rec, log


def replay(transform, gt: torch.Tensor, rec: dict, noise_log: list, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """The release's ``(LQ, GT)`` for ``gt`` with every draw of ``rec`` and ``noise_log``."""
    B = gt.shape[0]
    pulse = torch.zeros(B, 21, 21)
    pulse[:, 10, 10] = 1
    batch = {"hq": gt.float(), "kernel1": rec["kernel1"].float(),
             "kernel2": (rec["kernel2"] if rec["kernel2"] is not None else pulse).float(),
             "sinc_kernel": rec["sinc"].float(), "txt": [""] * B}
    with _scripted(rec, list(noise_log), cfg), torch.no_grad():
        out = transform(batch)
    return out["LQ"], out["GT"]


def released_config():
    from hypir.data import DegradationConfig

    return DegradationConfig(preset="released", queue_size=0)


def regenerate(root: str) -> None:
    from safetensors.torch import save_file

    cfg = released_config()
    transform, tensors, checksums = release_transform(root, cfg), {}, {}
    for seed, b, h, w in CASES:
        gt = case_images(seed, b, h, w)
        _, _, rec, log = ours_with_draws(gt, seed, cfg)
        lq, hq = replay(transform, gt, rec, log, cfg)
        tensors[f"{seed}/lq"] = (lq * 255).round().to(torch.uint8).contiguous()  # in 8-bit steps: lossless
        if seed in HQ_STORED:
            tensors[f"{seed}/hq"] = hq.contiguous()
        checksums[f"{seed}/gt"] = image_checksum(gt)
    from HYPIR.dataset.diffjpeg import DiffJPEG

    x, q = jpeg_case()
    tensors["jpeg/out"] = DiffJPEG(differentiable=False)(x.clone(), quality=q.clone()).contiguous()
    checksums["jpeg/x"] = image_checksum(x)
    STORED.parent.mkdir(exist_ok=True)
    save_file(tensors, str(STORED), metadata={"release": "XPixelGroup/HYPIR@b61d107", "torch": torch.__version__,
                                              "made_by": "tests/hypir/released_degradation_expected.py", **checksums})
    print(f"wrote {STORED} ({len(CASES)} cases)")


def photo_crops(folder: str, size: int = 256) -> torch.Tensor:
    """``[N, 3, size, size]``: 8-bit crops of every image in ``folder`` (centre and, for wide
    images, the centres of both halves)."""
    from hypir.data import read_image

    crops = []
    for path in sorted(Path(folder).iterdir()):
        img = read_image(path)[0]
        _, h, w = img.shape
        if min(h, w) < size:
            continue
        xs = [w // 2] if w < 2 * size else [w // 4, w // 2, 3 * w // 4]
        for x in xs:
            x0, y0 = min(max(x - size // 2, 0), w - size), (h - size) // 2
            crops.append(img[:, y0:y0 + size, x0:x0 + size])
    return torch.stack(crops)


def _release_kernels(root, b: int):
    """Kernels drawn as the release's ``RealESRGANDataset.__getitem__`` does, with its functions."""
    sys.path.insert(0, str(root))
    from HYPIR.utils.degradation import circular_lowpass_kernel, random_mixed_kernels

    kinds = ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"]
    probs = [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]
    out = {"kernel1": [], "kernel2": [], "sinc_kernel": []}
    for _ in range(b):
        for key, sigma in (("kernel1", [0.2, 3]), ("kernel2", [0.2, 1.5])):
            k = random.choice(range(7, 22, 2))
            if np.random.uniform() < 0.1:
                wc = np.random.uniform(np.pi / 3, np.pi) if k < 13 else np.random.uniform(np.pi / 5, np.pi)
                ker = circular_lowpass_kernel(wc, k, pad_to=False)
            else:
                ker = random_mixed_kernels(kinds, probs, k, sigma, sigma, [-math.pi, math.pi], [0.5, 4], [1, 2],
                                           noise_range=None)
            out[key].append(torch.from_numpy(np.pad(ker, (21 - k) // 2)).float())
        if np.random.uniform() < 0.8:
            k = random.choice(range(7, 22, 2))
            out["sinc_kernel"].append(torch.from_numpy(circular_lowpass_kernel(np.random.uniform(np.pi / 3, np.pi), k,
                                                                               pad_to=21)).float())
        else:
            pulse = torch.zeros(21, 21)
            pulse[10, 10] = 1
            out["sinc_kernel"].append(pulse)
    return {k: torch.stack(v) for k, v in out.items()}


def compare_on_photos(root: str, folder: str, draws: int = 100, batch: int = 4) -> None:
    """Same-draw differences, then PSNR(LQ, GT) over ``draws`` batches: ours vs the release's own draws."""
    from hypir.data import degrade

    cfg = released_config()
    transform, photos = release_transform(root, cfg), photo_crops(folder)
    print(f"{len(photos)} crops of 256 px from {folder}")
    worst, means = 0.0, []
    for seed in range(24):
        gt = photos[torch.randperm(len(photos), generator=torch.Generator().manual_seed(seed))[:batch]]
        lq, _, rec, log = ours_with_draws(gt, seed, cfg)
        ref, _ = replay(transform, gt, rec, log, cfg)
        d = (lq - ref).abs()
        worst, means = max(worst, float(d.max())), means + [float(d.mean())]
    print(f"same draws, 24 batches of {batch}: max {worst * 255:.3f}/255, mean of means {np.mean(means) * 255:.5f}/255")

    if not draws:
        return

    def psnr(lq, gt):
        return (10 * torch.log10(1 / ((lq.double() - gt.double()) ** 2).mean((1, 2, 3)))).tolist()

    random.seed(231), np.random.seed(231), torch.manual_seed(231)
    ours, release = [], []
    for i in range(draws):
        gt = photos[torch.randperm(len(photos), generator=torch.Generator().manual_seed(10_000 + i))[:batch]]
        lq, target = degrade(gt, 10_000 + i, cfg)
        ours += psnr(lq, target)
        out = transform({"hq": gt, **_release_kernels(root, batch), "txt": [""] * batch})
        release += psnr(out["LQ"], out["GT"])
    for name, v in (("ours (preset released)", ours), ("release", release)):
        q = np.percentile(v, [5, 50, 95])
        print(f"{name:24s} n={len(v)} mean {np.mean(v):.2f} dB  p5 {q[0]:.2f}  p50 {q[1]:.2f}  p95 {q[2]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3, 4):
        sys.exit("usage: python tests/hypir/released_degradation_expected.py /path/to/HYPIR [PHOTOS [BATCHES]]")
    if len(sys.argv) >= 3:
        compare_on_photos(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
    else:
        regenerate(sys.argv[1])
