// CPU launcher for random masks. Per (sample, chunk of drawn elements): the keep decisions of the
// chunk go into a small byte buffer (one Philox call per four elements, the same
// philox::draws/keep as hk::mask::apply_group), then each channel's run of the chunk is a
// straight select loop the compiler vectorises. Elements are only copied or zeroed, so the loop
// is written per element size.
#include <cstdint>
#include "hypir_kernels/launch.h"

namespace hk {
namespace {

constexpr int64_t kChunk = 4096;  // drawn elements per task (multiple of 4)

// Branch-free select on the bits (T is an unsigned integer of the element's size), so the loop
// vectorises: keep 1 -> all-ones mask, 0 -> zero.
template <typename T>
void select_run(const T* __restrict__ x, const uint8_t* __restrict__ keep, int64_t n, T* __restrict__ out) {
  for (int64_t j = 0; j < n; ++j) out[j] = x[j] & (T(0) - T(keep[j]));
}

template <typename T>
void run(const T* x, const int64_t* offsets, const MaskGeometry& g, T* out, T* out_further) {
  const int64_t n = mask::drawn_per_sample(g);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const int64_t plane = g.H * g.W;
  const int64_t channels = g.shared ? g.C : 1;
#pragma omp parallel
  {
    alignas(64) uint32_t draw[kChunk];
    alignas(64) uint8_t k1[kChunk];
    alignas(64) uint8_t k2[kChunk];
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < g.B; ++b) {
      for (int64_t ch = 0; ch < chunks; ++ch) {
        const int64_t e0 = ch * kChunk;
        const int64_t len = n - e0 < kChunk ? n - e0 : kChunk;
        // Draws of the chunk's groups, one group per iteration with no dependence between
        // iterations (the compiler vectorises Philox across groups).
        const uint64_t offset = uint64_t(offsets[b]);
        const int64_t groups = (len + 3) / 4;
        for (int64_t j = 0; j < groups; ++j) {
          const philox::u32x4 r = philox::draws(g.seed, offset, uint64_t(e0 / 4 + j));
          for (int lane = 0; lane < 4; ++lane) draw[4 * j + lane] = r.v[lane];
        }
        for (int64_t j = 0; j < len; ++j) {
          k1[j] = philox::keep(draw[j], g.threshold);
          k2[j] = philox::keep(draw[j], g.further_threshold);
        }
        for (int64_t c = 0; c < channels; ++c) {
          const int64_t base = g.shared ? (b * g.C + c) * plane + e0 : b * n + e0;
          select_run(x + base, k1, len, out + base);
          if (out_further) select_run(x + base, k2, len, out_further + base);
        }
      }
    }
  }
}

template <typename T>
void run_groupwise(const T* x, const int64_t* offsets, const MaskGeometry& g, T* out, T* out_further) {
  const int64_t groups = (mask::drawn_per_sample(g) + 3) / 4;
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t grp = 0; grp < groups; ++grp) mask::apply_group(x, out, out_further, g, b, uint64_t(offsets[b]), grp);
}

}  // namespace

void apply_mask_cpu_groupwise(DType dtype, const void* x, const int64_t* offsets, const MaskGeometry& g, void* out,
                              void* out_further) {
  switch (dtype) {
    case kFloat64:
      return run_groupwise(static_cast<const uint64_t*>(x), offsets, g, static_cast<uint64_t*>(out),
                           static_cast<uint64_t*>(out_further));
    case kFloat32:
      return run_groupwise(static_cast<const uint32_t*>(x), offsets, g, static_cast<uint32_t*>(out),
                           static_cast<uint32_t*>(out_further));
    default:  // float16, bfloat16
      return run_groupwise(static_cast<const uint16_t*>(x), offsets, g, static_cast<uint16_t*>(out),
                           static_cast<uint16_t*>(out_further));
  }
}

void apply_mask_cpu(DType dtype, const void* x, const int64_t* offsets, const MaskGeometry& g, void* out,
                    void* out_further) {
  switch (dtype) {
    case kFloat64:
      return run(static_cast<const uint64_t*>(x), offsets, g, static_cast<uint64_t*>(out), static_cast<uint64_t*>(out_further));
    case kFloat32:
      return run(static_cast<const uint32_t*>(x), offsets, g, static_cast<uint32_t*>(out), static_cast<uint32_t*>(out_further));
    default:  // float16, bfloat16
      return run(static_cast<const uint16_t*>(x), offsets, g, static_cast<uint16_t*>(out), static_cast<uint16_t*>(out_further));
  }
}

}  // namespace hk
