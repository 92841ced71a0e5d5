// 1-D correlation along one axis with boundary handling, and its exact adjoint: the per-element
// math of the separable blur, shared by the CPU launcher (borders) and the CUDA kernels (all).
//
// Forward, taps w[0..k), radius r = k/2:   y[i] = sum_t w[t] x[pad(i + t - r)]
// Adjoint:  xbar[m] = sum over q with pad(q) == m, q in [-r, n-1+r], of sum_t w[t] y[q - t + r]
// (terms with y-index outside [0, n) vanish). For reflect the preimages of a border pixel are the
// pixel and its mirror images, so the adjoint folds the border back rather than reflecting it.
#pragma once
#include "hypir_kernels/common.h"

namespace hk {
namespace filter {

enum Pad : int { kReflect = 0, kReplicate = 1, kCircular = 2, kZeros = 3 };

// Index of padded coordinate q in [0, n), or -1 where the padding is zero. Reflect excludes the
// edge pixel (torch's "reflect") and folds repeatedly when q is further than n - 1 away.
HK_HD int64_t pad_index(int64_t q, int64_t n, int mode) {
  if (q >= 0 && q < n) return q;
  switch (mode) {
    case kReflect: {
      if (n == 1) return 0;
      // One fold covers every tap when the radius is below n: no division on the common path.
      if (q < 0 && q > -n) return -q;
      if (q >= n && q < 2 * n - 1) return 2 * (n - 1) - q;
      const int64_t period = 2 * (n - 1);
      int64_t m = q % period;
      if (m < 0) m += period;
      return m < n ? m : period - m;
    }
    case kReplicate: return q < 0 ? 0 : n - 1;
    case kCircular: {
      if (q < 0 && q >= -n) return q + n;
      if (q >= n && q < 2 * n) return q - n;
      int64_t m = q % n;
      return m < 0 ? m + n : m;
    }
    default: return -1;
  }
}

// y[i] for one line: x at element stride sx.
template <typename T, typename Acc>
HK_HD Acc correlate_at(const T* x, int64_t sx, int64_t n, const Acc* w, int64_t k, int mode,
                       int64_t i) {
  const int64_t r = k / 2;
  Acc acc = Acc(0);
  for (int64_t t = 0; t < k; ++t) {
    const int64_t j = pad_index(i + t - r, n, mode);
    if (j >= 0) acc += w[t] * load_as<Acc>(x[j * sx]);
  }
  return acc;
}

// xbar[m] for one line: y at element stride sy.
template <typename T, typename Acc>
HK_HD Acc correlate_adjoint_at(const T* y, int64_t sy, int64_t n, const Acc* w, int64_t k,
                               int mode, int64_t m) {
  const int64_t r = k / 2;
  Acc acc = Acc(0);
  // q = m itself, then the padded positions that map onto m.
  for (int64_t pass = 0; pass < 2; ++pass) {
    const int64_t lo = pass == 0 ? m : -r, hi = pass == 0 ? m + 1 : n + r;
    for (int64_t q = lo; q < hi; ++q) {
      if (pass == 1) {
        if (q == 0) q = n;  // skip the interior: only q in [-r, 0) and [n, n + r)
        if (q >= hi || pad_index(q, n, mode) != m) continue;
      }
      for (int64_t t = 0; t < k; ++t) {
        const int64_t i = q - t + r;
        if (i >= 0 && i < n) acc += w[t] * load_as<Acc>(y[i * sy]);
      }
    }
  }
  return acc;
}

}  // namespace filter
}  // namespace hk
