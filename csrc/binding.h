// Tensor checks and geometry shared by the CPU and CUDA binding translation units (the only
// places that include torch headers).
#pragma once
#include <torch/library.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include "hypir_kernels/launch.h"

namespace hk {

// Large CPU outputs come from a small cache of freed output buffers (output_cache.cpp): a fresh
// multi-MB buffer costs one page fault per 4 KiB on first write, a large part of a streaming
// kernel's time; a reused one is already mapped. HYPIR_KERNELS_CPU_CACHE_MB bounds the cache
// (default 1024, 0 disables it); hypir_kernels.empty_cpu_cache() releases it.
at::Tensor empty_cpu_output(at::IntArrayRef sizes, const at::TensorOptions& options);
int64_t cpu_cache_bytes();
void empty_cpu_cache();

inline DType to_dtype(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat: return kFloat32;
    case at::kDouble: return kFloat64;
    case at::kHalf: return kFloat16;
    case at::kBFloat16: return kBFloat16;
    default:
      TORCH_CHECK_VALUE(false, name, ": expected float32, float64, float16 or bfloat16, got ",
                        t.scalar_type());
  }
}

inline void check_axis(const at::Tensor& o, const char* name, int64_t tile, int64_t extent) {
  TORCH_CHECK_VALUE(o.dim() == 1 && o.scalar_type() == at::kLong && o.device().is_cpu() &&
                        o.is_contiguous() && o.numel() >= 1,
                    name, ": expected a non-empty contiguous 1-D int64 CPU tensor");
  const int64_t* p = o.data_ptr<int64_t>();
  for (int64_t i = 0; i < o.numel(); ++i) {
    TORCH_CHECK_VALUE(p[i] >= 0 && p[i] < extent, name, ": origin ", p[i], " outside [0, ",
                      extent, ")");
    TORCH_CHECK_VALUE(i == 0 || p[i] > p[i - 1], name, ": origins must be strictly increasing");
    // Coverage: the gap to the next tile (or to the far edge) must not exceed the tile size.
    const int64_t next = i + 1 < o.numel() ? p[i + 1] : extent;
    TORCH_CHECK_VALUE(next - p[i] <= tile, name, ": pixels between ", p[i] + tile, " and ", next,
                      " are covered by no tile");
  }
  TORCH_CHECK_VALUE(p[0] == 0, name, ": pixels before ", p[0], " are covered by no tile");
}

// Validates the kernel-op arguments (ys, xs on the CPU, in output pixels) and returns the
// geometry; `out` is allocated by the caller from it.
inline blend::Geometry blend_geometry(const at::Tensor& tiles, const at::Tensor& ys,
                                      const at::Tensor& xs, int64_t out_h, int64_t out_w,
                                      int64_t weight, int64_t overlap_y, int64_t overlap_x) {
  TORCH_CHECK_VALUE(tiles.dim() == 5, "tiles: expected [B, N, C, TH, TW], got ", tiles.dim(),
                    " dims");
  TORCH_CHECK_VALUE(out_h > 0 && out_w > 0, "height/width: must be positive");
  TORCH_CHECK_VALUE(weight >= 0 && weight < hk::blend::kNumWeights, "weight: unknown weight code ", weight);
  const int64_t TH = tiles.size(3), TW = tiles.size(4);
  TORCH_CHECK_VALUE(TH > 0 && TW > 0, "tiles: empty tile size");
  check_axis(ys, "ys", TH, out_h);
  check_axis(xs, "xs", TW, out_w);
  TORCH_CHECK_VALUE(tiles.size(1) == ys.numel() * xs.numel(), "tiles: got ", tiles.size(1),
                    " tiles for a ", ys.numel(), "x", xs.numel(), " grid");
  blend::Geometry g;
  g.B = tiles.size(0); g.N = tiles.size(1); g.C = tiles.size(2); g.TH = TH; g.TW = TW;
  g.OH = out_h; g.OW = out_w; g.ny = ys.numel(); g.nx = xs.numel();
  g.overlap_y = overlap_y; g.overlap_x = overlap_x; g.kind = int(weight);
  g.s_b = tiles.stride(0); g.s_n = tiles.stride(1); g.s_c = tiles.stride(2);
  g.s_h = tiles.stride(3); g.s_w = tiles.stride(4);
  return g;
}

// Validates the separable-filter kernel-op arguments; taps must already be in the accumulation
// dtype (float64 for float64 x, else float32) and on x's device.
inline SeparableGeometry separable_geometry(const at::Tensor& x, const at::Tensor& wy,
                                            const at::Tensor& wx, int64_t pad, bool adjoint) {
  TORCH_CHECK_VALUE(x.dim() == 4, "x: expected [B, C, H, W], got ", x.dim(), " dims");
  to_dtype(x, "x");
  const auto acc = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  for (const auto* t : {&wy, &wx}) {
    const char* name = t == &wy ? "wy" : "wx";
    TORCH_CHECK_VALUE(t->dim() == 2 && t->size(0) == x.size(0) && t->size(1) % 2 == 1 &&
                          t->is_contiguous() && t->scalar_type() == acc &&
                          t->device() == x.device(),
                      name, ": expected contiguous [B, k] taps with odd k, dtype ", acc,
                      ", on ", x.device());
  }
  TORCH_CHECK_VALUE(pad >= 0 && pad <= 3, "pad: unknown padding code ", pad);
  SeparableGeometry g;
  g.B = x.size(0); g.C = x.size(1); g.H = x.size(2); g.W = x.size(3);
  g.ky = wy.size(1); g.kx = wx.size(1);
  for (int d = 0; d < 4; ++d) g.sx[d] = x.stride(d);
  g.pad = int(pad);
  g.adjoint = adjoint;
  return g;
}

// Checks for _apply_mask; thresholds are keep probabilities * 2^24 (further < 0: none).
inline MaskGeometry mask_geometry(const at::Tensor& x, int64_t seed, at::IntArrayRef offsets, int64_t threshold,
                                  int64_t further_threshold, bool shared) {
  TORCH_CHECK_VALUE(x.dim() == 4 && x.is_contiguous(), "x: expected a contiguous [B, C, H, W] tensor");
  to_dtype(x, "x");
  TORCH_CHECK_VALUE(static_cast<int64_t>(offsets.size()) == x.size(0), "offsets: expected one per sample (",
                    x.size(0), "), got ", offsets.size());
  const int64_t limit = int64_t(1) << 24;
  TORCH_CHECK_VALUE(threshold >= 0 && threshold <= limit, "threshold: expected [0, 2^24], got ", threshold);
  TORCH_CHECK_VALUE(further_threshold <= threshold, "further_threshold: must not exceed threshold");
  MaskGeometry g{x.size(0), x.size(1), x.size(2), x.size(3), static_cast<uint64_t>(seed),
                 static_cast<uint32_t>(threshold), static_cast<uint32_t>(further_threshold < 0 ? 0 : further_threshold),
                 shared};
  return g;
}

// Checks for _add_noise: x contiguous with B = size(0) samples, sigma float64 [B] on x's device.
inline NoiseGeometry noise_geometry(const at::Tensor& x, int64_t seed, at::IntArrayRef offsets, const at::Tensor& sigma) {
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.is_contiguous(), "x: expected a contiguous tensor with a batch dim");
  to_dtype(x, "x");
  TORCH_CHECK_VALUE(static_cast<int64_t>(offsets.size()) == x.size(0), "offsets: expected one per sample");
  TORCH_CHECK_VALUE(sigma.dim() == 1 && sigma.size(0) == x.size(0) && sigma.scalar_type() == at::kDouble &&
                        sigma.is_contiguous() && sigma.device() == x.device(),
                    "sigma: expected a contiguous float64 [B] tensor on x's device");
  const int64_t n = x.size(0) == 0 ? 0 : x.numel() / x.size(0);
  return NoiseGeometry{x.size(0), n, static_cast<uint64_t>(seed)};
}

}  // namespace hk
