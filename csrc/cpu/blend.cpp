// CPU launcher for tiled-overlap blending. Row-wise gather: each output row accumulates the
// tile rows that cover it into a thread-local fp32 (fp64 for double) row, then stores it once.
// Same terms and summation order as hk::blend::blend_pixel; the 1-D weights are tabulated
// once per call instead of per pixel.
#include <type_traits>
#include <vector>
#include "hypir_kernels/launch.h"

namespace hk {
namespace {

template <typename T>
void blend_rows(const T* tiles, const int64_t* ys, const int64_t* xs, const blend::Geometry& g,
                T* out) {
  using Acc = typename acc_type<T>::type;
  // Normalised column weights per (tile column, position): wx(p) / Sx(xs[ix] + p).
  std::vector<Acc> wxn(size_t(g.nx * g.TW), Acc(0));
  const int kind_x = blend::x_axis_kind(g.kind);
  for (int64_t ix = 0; ix < g.nx; ++ix) {
    for (int64_t p = 0; p < g.TW && xs[ix] + p < g.OW; ++p) {
      const int64_t x = xs[ix] + p;
      int64_t lo, hi;
      blend::axis_cover(xs, g.nx, g.TW, x, &lo, &hi);
      const Acc inv_sx = Acc(1) / blend::axis_norm<Acc>(xs, lo, hi, g.TW, g.overlap_x, kind_x, x);
      wxn[size_t(ix * g.TW + p)] = blend::axis_weight<Acc>(kind_x, p, g.TW, g.overlap_x) * inv_sx;
    }
  }
  const int64_t rows = g.B * g.C * g.OH;
  // When the storage type is the accumulation type, accumulate straight into the output row.
  constexpr bool kInPlace = std::is_same<T, Acc>::value;
#pragma omp parallel
  {
    std::vector<Acc> scratch(kInPlace ? 0 : size_t(g.OW));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t y = r % g.OH;
      const int64_t c = (r / g.OH) % g.C;
      const int64_t b = r / (g.OH * g.C);
      T* dst = out + r * g.OW;
      Acc* acc = kInPlace ? reinterpret_cast<Acc*>(dst) : scratch.data();
      std::fill(acc, acc + g.OW, Acc(0));
      int64_t ylo, yhi;
      blend::axis_cover(ys, g.ny, g.TH, y, &ylo, &yhi);
      const Acc inv_sy = Acc(1) / blend::axis_norm<Acc>(ys, ylo, yhi, g.TH, g.overlap_y, g.kind, y);
      for (int64_t iy = ylo; iy < yhi; ++iy) {
        const Acc wy = blend::axis_weight<Acc>(g.kind, y - ys[iy], g.TH, g.overlap_y) * inv_sy;
        for (int64_t ix = 0; ix < g.nx; ++ix) {
          const int64_t x0 = xs[ix];
          const int64_t len = (x0 + g.TW <= g.OW ? g.TW : g.OW - x0);
          const T* __restrict__ src = tiles + b * g.s_b + (iy * g.nx + ix) * g.s_n + c * g.s_c +
                         (y - ys[iy]) * g.s_h;
          const Acc* __restrict__ w = wxn.data() + ix * g.TW;
          Acc* __restrict__ a = acc + x0;
          if (g.s_w == 1) {
            for (int64_t p = 0; p < len; ++p) a[p] += (wy * w[p]) * load_as<Acc>(src[p]);
          } else {
            for (int64_t p = 0; p < len; ++p)
              a[p] += (wy * w[p]) * load_as<Acc>(src[p * g.s_w]);
          }
        }
      }
      if (!kInPlace)
        for (int64_t x = 0; x < g.OW; ++x) dst[x] = store_from<T>::cvt(acc[x]);
    }
  }
}

template <typename T>
void blend_pixels(const T* tiles, const int64_t* ys, const int64_t* xs, const blend::Geometry& g,
                  T* out) {
  const int64_t total = g.B * g.C * g.OH * g.OW;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) {  // same index decomposition as the CUDA kernel
    const int64_t x = i % g.OW;
    const int64_t y = (i / g.OW) % g.OH;
    const int64_t c = (i / (g.OW * g.OH)) % g.C;
    const int64_t b = i / (g.OW * g.OH * g.C);
    out[i] = store_from<T>::cvt(blend::blend_pixel(tiles, ys, xs, g, b, c, y, x));
  }
}

}  // namespace

void blend_tiles_cpu_pixelwise(DType dtype, const void* tiles, const int64_t* ys,
                               const int64_t* xs, const blend::Geometry& g, void* out) {
  switch (dtype) {
    case kFloat32: blend_pixels(static_cast<const float*>(tiles), ys, xs, g, static_cast<float*>(out)); break;
    case kFloat64: blend_pixels(static_cast<const double*>(tiles), ys, xs, g, static_cast<double*>(out)); break;
    case kFloat16: blend_pixels(static_cast<const half_t*>(tiles), ys, xs, g, static_cast<half_t*>(out)); break;
    case kBFloat16: blend_pixels(static_cast<const bf16_t*>(tiles), ys, xs, g, static_cast<bf16_t*>(out)); break;
  }
}

void blend_tiles_cpu(DType dtype, const void* tiles, const int64_t* ys, const int64_t* xs,
                     const blend::Geometry& g, void* out) {
  switch (dtype) {
    case kFloat32: blend_rows(static_cast<const float*>(tiles), ys, xs, g, static_cast<float*>(out)); break;
    case kFloat64: blend_rows(static_cast<const double*>(tiles), ys, xs, g, static_cast<double*>(out)); break;
    case kFloat16: blend_rows(static_cast<const half_t*>(tiles), ys, xs, g, static_cast<half_t*>(out)); break;
    case kBFloat16: blend_rows(static_cast<const bf16_t*>(tiles), ys, xs, g, static_cast<bf16_t*>(out)); break;
  }
}

}  // namespace hk
