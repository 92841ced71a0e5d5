// CPU filter2d (float32 / float64) and its exact adjoint, fused per (sample, channel) plane:
//   1. FFT along H of the H-padded columns (zero tail up to n >= H + 2r, n = 2^a 3^b),
//   2. per frequency row, a k-tap complex correlation along W of the W-padded spectra with the
//      kernel columns' spectra as taps (taps[b, t, f] = conj(FFT_n(kernel[b, :, t]))[f] / n),
//   3. inverse FFT along H, rows [0, H) written out.
// The adjoint runs the transposed steps: the gradient's rows zero-extended, the full (conjugate,
// reversed-tap) correlation along W with the padded columns folded back, the inverse FFT, the
// padded rows folded back.
// The FFTs run "vertically": a SIMD lane is one image column, so a transform of L columns is
// scalar-style code on L-wide vectors with no shuffles and no transposes; two real column blocks
// share one complex transform (a + ib) and are separated through Z[n - f]. The mixing's lanes are
// columns too, so its shifted operands are plain unaligned loads. Variants: AVX-512 (16 lanes),
// AVX2 (8), portable (4, SSE2), chosen at run time; float64 the same with half the lanes.
#include <cmath>
#include <cstring>
#include <vector>
#include <omp.h>
#include "cpu_features.h"
#include "hypir_kernels/launch.h"

#define HK_VINLINE inline __attribute__((always_inline))

// The vector types below are only ever used inside the ISA-targeted entry points (everything is
// inlined into them), so the ABI notes GCC gives for them do not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace hk {
namespace {

// One radix-p stage of a Stockham FFT of length n = p * m * s: s interleaved sub-transforms of
// length p * m each split into p of length m; twiddles w_j^u = exp(-2 pi i j u / (p m)).
struct Stage {
  int p, m, s;
  std::vector<double> wr, wi;  // [m][p], forward sign (the inverse conjugates)
};

// Radix 4 first, then 2 and 3 (n = 2^a 3^b, checked by the binding).
std::vector<Stage> plan_fft(int64_t n) {
  std::vector<int> factors;
  int64_t rest = n;
  while (rest % 4 == 0) factors.push_back(4), rest /= 4;
  while (rest % 2 == 0) factors.push_back(2), rest /= 2;
  while (rest % 3 == 0) factors.push_back(3), rest /= 3;
  std::vector<Stage> stages;
  int64_t len = n;  // length of the sub-transforms this stage splits
  for (int p : factors) {
    Stage st{p, int(len / p), int(n / len), {}, {}};
    st.wr.resize(size_t(st.m) * p);
    st.wi.resize(size_t(st.m) * p);
    for (int j = 0; j < st.m; ++j)
      for (int u = 0; u < p; ++u) {
        const double a = 2.0 * M_PI * double(j) * double(u) / double(len);
        st.wr[j * p + u] = std::cos(a);
        st.wi[j * p + u] = -std::sin(a);
      }
    stages.push_back(std::move(st));
    len /= p;
  }
  return stages;
}

struct Plan {
  std::vector<Stage> stages;         // of the forward FFT; the inverse conjugates the twiddles
  std::vector<int64_t> rows;         // source row of each of the n transform rows (-1: zero)
  std::vector<int64_t> border;       // source column of the 2r padded columns (-1: zero)
  std::vector<int64_t> border_rows;  // source row of the 2r padded rows (-1: zero)
};

}  // namespace

// One copy of the lane code per ISA and dtype, each compiled for its own target.
#define HK_LANES(NAME, SCALAR, BYTES, FMA)                  \
  namespace NAME {                                          \
  typedef SCALAR T;                                         \
  typedef SCALAR V __attribute__((vector_size(BYTES)));     \
  HK_VINLINE V fmadd(V a, V b, V c) { return FMA; }         \
  }
HK_LANES(portable_f32, float, 16, a * b + c)
HK_LANES(portable_f64, double, 16, a * b + c)
namespace portable_f32 {
#include "filter2d_fft_lanes.inc"
}
namespace portable_f64 {
#include "filter2d_fft_lanes.inc"
}

#ifdef HK_CPU_AVX2
#pragma GCC push_options
#pragma GCC target("avx2,fma")
HK_LANES(avx2_f32, float, 32, (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c))
HK_LANES(avx2_f64, double, 32, (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c))
namespace avx2_f32 {
#include "filter2d_fft_lanes.inc"
}
namespace avx2_f64 {
#include "filter2d_fft_lanes.inc"
}
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
HK_LANES(avx512_f32, float, 64, (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c))
HK_LANES(avx512_f64, double, 64, (V)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c))
namespace avx512_f32 {
#include "filter2d_fft_lanes.inc"
}
namespace avx512_f64 {
#include "filter2d_fft_lanes.inc"
}
#pragma GCC pop_options
#endif
#undef HK_LANES

namespace {

Plan make_plan(const Filter2dGeometry& g) {
  const int64_t r = g.k / 2;
  Plan plan{plan_fft(g.n), {}, {}, {}};
  for (int64_t q = 0; q < g.n; ++q) {
    if (g.adjoint)  // the gradient's rows, zero-extended
      plan.rows.push_back(q < g.H ? q : -1);
    else
      plan.rows.push_back(q < g.H + 2 * r ? filter::pad_index(q - r, g.H, g.pad) : -1);
  }
  for (int64_t q = 0; q < 2 * r; ++q) {
    const int64_t c = q < r ? q - r : g.W + q - r, y = q < r ? q - r : g.H + q - r;
    plan.border.push_back(filter::pad_index(c, g.W, g.pad));
    plan.border_rows.push_back(filter::pad_index(y, g.H, g.pad));
  }
  return plan;
}

}  // namespace

void filter2d_fft_cpu(bool fp64, const void* x, const void* taps, const Filter2dGeometry& g, void* out) {
  const Plan plan = make_plan(g);
  const bool avx512 = cpu_has_avx512(), avx2 = cpu_has_avx2();
  (void)avx512, (void)avx2;
#define HK_RUN(NS, T)                                                                                            \
  return NS::run_planes(static_cast<const T*>(x), static_cast<const T*>(taps), g, plan, static_cast<T*>(out))
  if (fp64) {
#ifdef HK_CPU_AVX2
    if (avx512) HK_RUN(avx512_f64, double);
    if (avx2) HK_RUN(avx2_f64, double);
#endif
    HK_RUN(portable_f64, double);
  }
#ifdef HK_CPU_AVX2
  if (avx512) HK_RUN(avx512_f32, float);
  if (avx2) HK_RUN(avx2_f32, float);
#endif
  HK_RUN(portable_f32, float);
#undef HK_RUN
}

}  // namespace hk
