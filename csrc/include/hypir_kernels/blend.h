// Tiled-overlap blending: the per-axis weight and the per-pixel gather, shared by the CPU
// launcher and the CUDA kernel.
//
// Layout: tiles [B, N, C, TH, TW] (any strides), N = ny * nx tiles on a Cartesian grid,
// tile n = iy * nx + ix has its top-left output pixel at (ys[iy], xs[ix]); ys and xs are strictly
// increasing. Output [B, C, OH, OW] contiguous. Every output pixel must be covered (the Python
// boundary checks it). The blend weight is separable, w(y, x) = wy(y - ys[iy]) * wx(x - xs[ix]),
// and so is its normaliser over the covering tiles, because the covering set is a product of a
// row range and a column range: out = sum_{iy, ix} (wy / Sy) (wx / Sx) tile.
#pragma once
#include <cmath>
#include "hypir_kernels/common.h"

namespace hk {
namespace blend {

// kGaussianReleased is the released HYPIR's (DiffBIR's) tile weight: the Gaussian with its x
// centre at (T-1)/2 but its y centre at T/2. It is the only kind whose two axes differ: the y axis
// uses it as given, the x axis as kGaussian (x_axis_kind).
enum Weight : int { kGaussian = 0, kLinear = 1, kCosine = 2, kUniform = 3, kGaussianReleased = 4 };
constexpr int kNumWeights = 5;

HK_HD int x_axis_kind(int kind) { return kind == kGaussianReleased ? int(kGaussian) : kind; }

// Gaussian std as a fraction of the tile size (DiffBIR/HYPIR use var = 0.01 -> std = 0.1 tile).
constexpr double kGaussianStd = 0.1;

// Weight of position p in [0, T) of a tile of size T whose neighbours overlap it by `overlap`.
// Always > 0 (the smallest gaussian value is exp(-12.5) per axis); symmetric, w(p) == w(T-1-p),
// except kGaussianReleased (centred at T/2). W is the accumulation type (float, or double for
// float64 data).
template <typename W>
HK_HD W axis_weight(int kind, int64_t p, int64_t T, int64_t overlap) {
  if (kind == kGaussian || kind == kGaussianReleased) {
    const W centre = kind == kGaussian ? W(0.5) * W(T - 1) : W(0.5) * W(T);
    const W d = (W(p) - centre) / (W(kGaussianStd) * W(T));
    return math_exp(-W(0.5) * d * d);
  }
  if (kind == kUniform || overlap <= 0) return W(1);
  const int64_t edge = p < T - 1 - p ? p : T - 1 - p;  // distance to the nearer tile edge
  W r = W(edge + 1) / W(overlap + 1);                 // in (0, 1] inside the ramp
  if (r > W(1)) r = W(1);
  if (kind == kLinear) return r;
  const W s = math_sin(W(1.5707963267948966) * r);       // cosine ramp: sin^2(pi/2 r)
  return s * s;
}

// Tiles [lo, hi) of a sorted grid axis whose span [o, o + T) contains coordinate c.
HK_HD void axis_cover(const int64_t* origins, int64_t n, int64_t T, int64_t c, int64_t* lo,
                      int64_t* hi) {
  int64_t a = 0, b = n;  // first tile with origins[i] + T > c
  while (a < b) {
    const int64_t m = (a + b) / 2;
    if (origins[m] + T <= c) a = m + 1; else b = m;
  }
  int64_t e = a;
  while (e < n && origins[e] <= c) ++e;
  *lo = a;
  *hi = e;
}

// Sum of the axis weights of the covering tiles (the axis normaliser).
template <typename W>
HK_HD W axis_norm(const int64_t* origins, int64_t lo, int64_t hi, int64_t T, int64_t overlap,
                  int kind, int64_t c) {
  W s = W(0);
  for (int64_t i = lo; i < hi; ++i) s += axis_weight<W>(kind, c - origins[i], T, overlap);
  return s;
}

struct Geometry {
  int64_t B, C, N, TH, TW, OH, OW, ny, nx;
  int64_t overlap_y, overlap_x;
  int kind;
  int64_t s_b, s_n, s_c, s_h, s_w;  // tile strides, in elements
};

// One output pixel (b, c, y, x): the normalised weighted sum over the tiles covering it.
template <typename T>
HK_HD typename acc_type<T>::type blend_pixel(const T* tiles, const int64_t* ys, const int64_t* xs,
                                             const Geometry& g, int64_t b, int64_t c, int64_t y,
                                             int64_t x) {
  using Acc = typename acc_type<T>::type;
  int64_t ylo, yhi, xlo, xhi;
  axis_cover(ys, g.ny, g.TH, y, &ylo, &yhi);
  axis_cover(xs, g.nx, g.TW, x, &xlo, &xhi);
  const Acc inv_sy = Acc(1) / axis_norm<Acc>(ys, ylo, yhi, g.TH, g.overlap_y, g.kind, y);
  const int kind_x = x_axis_kind(g.kind);
  const Acc inv_sx = Acc(1) / axis_norm<Acc>(xs, xlo, xhi, g.TW, g.overlap_x, kind_x, x);
  Acc acc = Acc(0);
  for (int64_t iy = ylo; iy < yhi; ++iy) {
    const Acc wy = axis_weight<Acc>(g.kind, y - ys[iy], g.TH, g.overlap_y) * inv_sy;
    for (int64_t ix = xlo; ix < xhi; ++ix) {
      const Acc wx = axis_weight<Acc>(kind_x, x - xs[ix], g.TW, g.overlap_x) * inv_sx;
      const int64_t off = b * g.s_b + (iy * g.nx + ix) * g.s_n + c * g.s_c +
                          (y - ys[iy]) * g.s_h + (x - xs[ix]) * g.s_w;
      acc += (wy * wx) * load_as<Acc>(tiles[off]);
    }
  }
  return acc;
}

}  // namespace blend
}  // namespace hk
