// Random masks applied without materialising them, shared by the CPU loop and the CUDA kernel.
// For x [B, C, H, W] contiguous, element e of sample b (e = pixel index y*W + x when the mask is
// shared across channels, else (c*H + y)*W + x) is kept iff philox::keep(draw, threshold) with
// draw = draws(seed, offsets[b], e / 4).v[e % 4]. Dropped entries are exact zeros.
#pragma once
#include "hypir_kernels/philox.h"

namespace hk {

struct MaskGeometry {
  int64_t B, C, H, W;
  uint64_t seed;
  uint32_t threshold, further_threshold;  // keep probability * 2^24; the further one is lower
  bool shared;
};

namespace mask {

// Elements drawn per sample: pixels (shared across channels) or all elements.
HK_HD int64_t drawn_per_sample(const MaskGeometry& g) { return g.shared ? g.H * g.W : g.C * g.H * g.W; }

// Apply the masks to the (up to) four elements of draw group `group` of sample `b`.
// out_further may be null. T is any trivially copyable element type (only copied or zeroed).
template <typename T>
HK_HD void apply_group(const T* x, T* out, T* out_further, const MaskGeometry& g, int64_t b, uint64_t offset,
                       int64_t group) {
  const philox::u32x4 r = philox::draws(g.seed, offset, uint64_t(group));
  const int64_t n = drawn_per_sample(g);
  const int64_t plane = g.H * g.W;
  const int64_t channels = g.shared ? g.C : 1;
  for (int lane = 0; lane < 4; ++lane) {
    const int64_t e = 4 * group + lane;
    if (e >= n) break;
    const bool k1 = philox::keep(r.v[lane], g.threshold);
    const bool k2 = philox::keep(r.v[lane], g.further_threshold);
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t i = g.shared ? (b * g.C + c) * plane + e : b * n + e;
      const T v = x[i];
      out[i] = k1 ? v : T{};
      if (out_further) out_further[i] = k2 ? v : T{};
    }
  }
}

}  // namespace mask
}  // namespace hk
