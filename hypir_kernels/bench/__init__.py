"""``python -m hypir_kernels.bench``: the main job. For every kernel family it checks the
kernel against its reference on the default shapes, then times it against the anchors users
run today, in the same process on the same inputs, and prints a table with the ratios."""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Row:
    family: str
    case: str
    ours_ms: float
    anchor: str
    anchor_ms: float
    check: str

    @property
    def speedup(self) -> float:
        return self.anchor_ms / self.ours_ms


def time_ms(fn: Callable[[], object], setup: Callable[[], object] | None = None, repeats: int = 7, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in ms; ``setup`` runs untimed before each call."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times = []
    for i in range(warmup + repeats):
        arg = setup() if setup else None
        sync()
        t0 = time.perf_counter()
        fn(arg) if setup else fn()
        sync()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt * 1e3)
    return statistics.median(times)


def bench_blend(repeats: int) -> list[Row]:
    from . import blend as b

    image, tiles, origins = b.make_case()
    b.warm_up(image, tiles, origins)
    err = b.check(tiles, origins)
    check = f"max|ours-ref| {err:.1e} {'ok' if err <= 1e-5 else 'FAIL'}"
    ours_ms = time_ms(lambda: b.ours(tiles, origins), repeats=repeats)
    weights = b.gaussian_tile_weights(b.TILE, b.CHANNELS)
    case = f"{b.SIZE}x{b.SIZE} RGB, tile {b.TILE}, stride {b.STRIDE}, gaussian"
    rows = [Row("blend_tiles", case, ours_ms, "accumulate+count loop", time_ms(lambda: b.accumulate_with_count(tiles, origins, weights), repeats=repeats), check)]
    try:
        anchor = time_ms(lambda rows_: b.diffusers_merge(rows_), setup=lambda: b.diffusers_grid_tiles(image), repeats=repeats)
        rows.append(Row("blend_tiles", case, ours_ms, "diffusers blend_v/blend_h", anchor, check))
    except ImportError:
        rows.append(Row("blend_tiles", case, ours_ms, "diffusers (not installed)", float("nan"), check))
    if torch.cuda.is_available():
        rows.extend(_bench_blend_cuda(b, case, repeats))
    return rows


def _bench_blend_cuda(b, case: str, repeats: int) -> list[Row]:
    from .. import use_backend

    _, tiles, origins = b.make_case()
    tiles = tiles.cuda()
    weights = b.gaussian_tile_weights(b.TILE, b.CHANNELS).cuda()
    anchor_ms = time_ms(lambda: b.accumulate_with_count(tiles, origins, weights), repeats=repeats)
    rows = []
    for name in ("cuda", "triton"):
        with use_backend("reference"):
            ref = b.ours(tiles, origins)
        with use_backend(name):
            err = (b.ours(tiles, origins) - ref).abs().max().item()
            ms = time_ms(lambda: b.ours(tiles, origins), repeats=repeats)
        check = f"max|ours-ref| {err:.1e} {'ok' if err <= 1e-5 else 'FAIL'}"
        rows.append(Row(f"blend[{name}]", case + " (GPU)", ms, "accumulate+count (GPU)", anchor_ms, check))
    return rows


def bench_blur(repeats: int) -> list[Row]:
    from . import blur as b
    from .. import use_backend

    x = b.make_input()
    rows = []
    for k, sigma in b.CASES:
        with use_backend("reference"):
            ref = b.ours(x[:2], k, sigma)
        err = (b.ours(x[:2], k, sigma) - ref).abs().max().item()
        check = f"max|ours-ref| {err:.1e} {'ok' if err <= 1e-5 else 'FAIL'}"
        case = f"{list(b.SHAPE)} {k}x{k} sigma {sigma:g} reflect"
        ours_ms = time_ms(lambda: b.ours(x, k, sigma), repeats=repeats)
        weight = b.filter_2d(k, sigma).expand(x.shape[1], 1, k, k).contiguous()
        rows.append(Row("gaussian_blur", case, ours_ms, "torch conv2d depthwise", time_ms(lambda: b.conv2d_depthwise(x, weight), repeats=repeats), check))
        try:
            physics = b.deepinv_blur(k, sigma)
            rows.append(Row("gaussian_blur", case, ours_ms, "deepinv Blur", time_ms(lambda: physics.A(x), repeats=repeats), check))
        except ImportError:
            rows.append(Row("gaussian_blur", case, ours_ms, "deepinv (not installed)", float("nan"), check))
    return rows


def bench_attention(repeats: int) -> list[Row]:
    from . import attention as b

    try:
        ours_unet, default_unet = b.make_unet("ours"), b.make_unet("default")
    except ImportError:
        return [Row("attention", "UNet processor", float("nan"), "diffusers (not installed)", float("nan"), "")]
    inputs = b.unet_inputs()
    err = (b.run_unet(ours_unet, inputs) - b.run_unet(default_unet, inputs)).abs().max().item()
    check = f"max|ours-default| {err:.1e} {'ok' if err <= 1e-4 else 'FAIL'}"
    case = f"UNet fwd, B={b.BATCH}, 1024+256 tok, D=64"
    rows = [Row("attention", case, time_ms(lambda: b.run_unet(ours_unet, inputs), repeats=repeats),
                "diffusers AttnProcessor2_0", time_ms(lambda: b.run_unet(default_unet, inputs), repeats=repeats), check)]
    if torch.cuda.is_available():
        rows.extend(_bench_attention_cuda(b, repeats))
    return rows


def _bench_attention_cuda(b, repeats: int) -> list[Row]:
    impls = b.implementations()
    rows = []
    for shape in b.sd2_shapes(512) + b.sd2_shapes(1024):
        for backward in (False, True):
            q, k, v, go = b.make_qkv(shape, requires_grad=backward)
            with torch.no_grad():
                err = (impls["ours"](q, k, v).float() - impls["sdpa_flash"](q, k, v).float()).abs().max().item()
            check = f"max|ours-flash| {err:.1e} {'ok' if err <= 2e-2 else 'FAIL'}"
            times = {name: time_ms(lambda: b.step(fn, q, k, v, go, backward), repeats=repeats) for name, fn in impls.items()}
            tflops = shape.flops(backward) / (times["ours"] * 1e-3) / 1e12
            case = f"{shape.name} {'fwd+bwd' if backward else 'fwd'} bf16 ({tflops:.0f} TFLOP/s)"
            for name in impls:
                if name != "ours":
                    rows.append(Row("attention", case, times["ours"], name, times[name], check))
    return rows


def bench_lora(repeats: int) -> list[Row]:
    from . import lora as b

    try:
        layers = b.sd2_lora_layers(256)
    except ImportError:
        return [Row("lora", "SD2 layer suite", float("nan"), "diffusers/peft (not installed)", float("nan"), "")]
    rows = []
    for rank in (256, 64):
        res = b.run_suite(rank, repeats=min(repeats, 3), layers=layers)
        check = f"max rel|ours-peft| {res.max_err:.1e} {'ok' if res.max_err <= 1e-4 else 'FAIL'}; saved {res.saved_ratio:.2f}x"
        case = f"SD2 256px {sum(layers.values())} layers r={rank} fwd+bwd"
        rows.append(Row("lora", case, res.ours_ms, "peft", res.peft_ms, check))
    return rows


def bench_masks(repeats: int) -> list[Row]:
    from . import masks as b
    from .. import use_backend

    x = b.make_input()
    with use_backend("reference"):
        ref = b.ours(x[:2])
    got = b.ours(x[:2])
    same = torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    check = f"bit-identical to reference: {'ok' if same else 'FAIL'}"
    case = f"{list(b.SHAPE)} keep {b.KEEP} + further {b.DELTA}"
    for fn in (lambda: b.ours(x), lambda: b.torch_rand_compare_multiply(x)):  # interleaved warm-up
        fn()
    return [Row("apply_mask", case, time_ms(lambda: b.ours(x), repeats=repeats), "torch rand-compare-multiply",
                time_ms(lambda: b.torch_rand_compare_multiply(x), repeats=repeats), check)]


def bench_mri(repeats: int) -> list[Row]:
    from . import mri as b

    x, maps, cols = b.make_case()
    mask = b.full_mask(cols)
    y = b.ours_forward(x, maps, cols)
    rows = []
    for name, ours, anchor_fn, arg in (("mri_forward", b.ours_forward, b.torch_forward, x),
                                       ("mri_adjoint", b.ours_adjoint, b.torch_adjoint, y)):
        expected = anchor_fn(arg, maps, mask)
        err = (ours(arg, maps, cols) - expected).abs().max().item() / expected.abs().max().item()
        check = f"rel|ours-torch| {err:.1e} {'ok' if err <= 1e-5 else 'FAIL'}"
        case = f"B={b.B} Nc={b.NC} {b.H}x{b.W} c64, R=4 columns"
        ours_ms = time_ms(lambda: ours(arg, maps, cols), repeats=repeats)
        rows.append(Row(name, case, ours_ms, "torch fftshift formula", time_ms(lambda: anchor_fn(arg, maps, mask), repeats=repeats), check))
        try:
            physics = b.deepinv_physics(maps, mask)
            op = physics.A if name == "mri_forward" else physics.A_adjoint
            rows.append(Row(name, case, ours_ms, "deepinv MultiCoilMRI", time_ms(lambda: op(arg), repeats=repeats), check))
        except ImportError:
            rows.append(Row(name, case, ours_ms, "deepinv (not installed)", float("nan"), check))
    return rows


def bench_filter2d(repeats: int) -> list[Row]:
    from . import filter2d as b

    rows = []
    for k in b.SIZES:
        x, kernels = b.make_case(k)
        expected = b.basicsr_filter2d(x[:2], kernels[:2])
        err = (b.ours(x[:2], kernels[:2]) - expected).abs().max().item()
        check = f"max|ours-basicsr| {err:.1e} {'ok' if err <= 1e-4 else 'FAIL'}"
        rows.append(Row("filter2d", f"{list(b.SHAPE)} {k}x{k} per-sample, reflect", time_ms(lambda: b.ours(x, kernels), repeats=repeats),
                        "BasicSR grouped conv2d", time_ms(lambda: b.basicsr_filter2d(x, kernels), repeats=repeats), check))
    return rows


def bench_group_norm(repeats: int) -> list[Row]:
    from . import group_norm as b

    rows = []
    # torch's bf16 GroupNorm rounds to bf16 before its SiLU, ours once after: up to 2 bf16 ulps apart
    for dtype, tol in ((torch.float32, 5e-5), (torch.bfloat16, 1.6e-2)):  # fp32: summation order
        for channels, side in b.VAE_LEVELS:
            x, w, bias = b.make_case(channels, side, dtype)
            expected = b.torch_pair(x, w, bias).float()
            err = ((b.ours(x, w, bias).float() - expected).abs().max() / expected.abs().max()).item()
            check = f"max rel|ours-torch| {err:.1e} {'ok' if err <= tol else 'FAIL'}"
            case = f"[1, {channels}, {side}, {side}] {str(dtype)[6:]} NHWC fwd"
            rows.append(Row("group_norm_silu", case, time_ms(lambda: b.ours(x, w, bias), repeats=repeats),
                            "F.group_norm + F.silu", time_ms(lambda: b.torch_pair(x, w, bias), repeats=repeats), check))
    x, w, bias, grad = b.make_train_case()
    got, expected = b.train_step(b.ours, x, w, bias, grad), b.train_step(b.torch_pair, x, w, bias, grad)
    err = max(((g - e).abs().max() / e.abs().max()).item() for g, e in zip(got, expected))
    check = f"max rel|ours-torch| {err:.1e} {'ok' if err <= 1e-4 else 'FAIL'}"
    rows.append(Row("group_norm_silu", f"{list(b.TRAIN_SHAPE)} fp32 NHWC fwd+bwd",
                    time_ms(lambda: b.train_step(b.ours, x, w, bias, grad), repeats=repeats), "F.group_norm + F.silu",
                    time_ms(lambda: b.train_step(b.torch_pair, x, w, bias, grad), repeats=repeats), check))
    return rows


FAMILIES: dict[str, Callable[[int], list[Row]]] = {
    "blend": bench_blend, "blur": bench_blur, "attention": bench_attention, "lora": bench_lora, "masks": bench_masks,
    "mri": bench_mri, "filter2d": bench_filter2d, "group_norm": bench_group_norm,
}


def format_rows(rows: list[Row]) -> str:
    head = f"| {'op':<12} | {'case':<44} | {'ours ms':>8} | {'anchor':<26} | {'anchor ms':>9} | {'speedup':>7} | check |"
    sep = "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"
    lines = [head, sep]
    for r in rows:
        lines.append(
            f"| {r.family:<12} | {r.case:<44} | {r.ours_ms:8.2f} | {r.anchor:<26} | {r.anchor_ms:9.2f} | {r.speedup:6.2f}x | {r.check} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=sorted(FAMILIES), action="append", help="only these families")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per case (median reported)")
    args = parser.parse_args(argv)
    from .. import info

    data = info()
    print(f"hypir_kernels {data['hypir_kernels']}, torch {data['torch']}, {torch.get_num_threads()} CPU threads, "
          f"device: {data['cuda_device'] or 'CPU only'}")
    rows: list[Row] = []
    for name in args.family or sorted(FAMILIES):
        rows.extend(FAMILIES[name](args.repeats))
    print(format_rows(rows))
    failed = [r for r in rows if "FAIL" in r.check]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
