"""A kernel that is valid Triton but spills: a 128x256 fp32 accumulator held by 4 warps (256
registers of accumulator per thread). Run as a script (outside the interpreter); prints the
resource rows that ``hypir_kernels.tools.aot.compile_config`` computes for it."""
import json

import triton
import triton.language as tl

from hypir_kernels.tools.aot import compile_config
from hypir_kernels.triton import AotConfig


@triton.jit
def big_tile_matmul(a_ptr, b_ptr, c_ptr, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rm = tl.arange(0, BM)
    rn = tl.arange(0, BN)
    rk = tl.arange(0, BK)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k in range(0, K, BK):
        a = tl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :])
        b = tl.load(b_ptr + (k + rk)[:, None] * BN + rn[None, :])
        acc += tl.dot(a, b)
    tl.store(c_ptr + rm[:, None] * BN + rn[None, :], acc)


if __name__ == "__main__":
    cfg = AotConfig(
        name="big_tile_matmul",
        kernel=big_tile_matmul,
        signature={"a_ptr": "*fp16", "b_ptr": "*fp16", "c_ptr": "*fp32", "K": "i32", "BM": "constexpr", "BN": "constexpr", "BK": "constexpr"},
        constexprs={"BM": 128, "BN": 256, "BK": 64},
        num_warps=4,
    )
    rows = [compile_config(cfg, arch) for arch in (80, 90)]
    print(json.dumps([{"arch": r.arch, "spill_stores": r.spill_stores, "ok": r.ok, "problems": r.problems} for r in rows]))
