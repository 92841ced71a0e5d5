// CPU launcher for separable per-sample filtering (Gaussian blur) and its exact adjoint.
// Per (b, c) plane: a pass along W into a plane-sized fp32 (fp64) scratch, then a pass along H.
// Interior pixels use straight vectorisable loops; pixels whose taps reach the padding use the
// header's correlate_at / correlate_adjoint_at (the code the CUDA kernels run everywhere).
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>
#include "cpu_features.h"
#include "hypir_kernels/launch.h"

namespace hk {
namespace {

using filter::correlate_adjoint_at;
using filter::correlate_at;

// Positions m whose forward taps stay inside [0, n) and whose adjoint has no folded terms.
inline void interior(int64_t n, int64_t k, int64_t* lo, int64_t* hi) {
  const int64_t r = k / 2;
  *lo = r + 1 < n ? r + 1 : n;
  *hi = n - r - 1 > *lo ? n - r - 1 : *lo;
}

#ifdef HK_CPU_AVX2
// dst[i] = sum_t w[t] * rows[t][i], i in [0, n): 8-wide FMAs with the accumulators in registers
// (the portable build targets SSE2 and re-reads an accumulator row per tap). Chosen at run time
// on CPUs with AVX2 and FMA; float32 only. FMA rounds once per tap, so results differ from the
// portable loop by float32 rounding.
__attribute__((target("avx2,fma"))) void taps_avx2(const float* const* rows, const float* w, int64_t ntaps, int64_t n,
                                                   float* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int64_t t = 0; t < ntaps; ++t) {
      const __m256 wt = _mm256_set1_ps(w[t]);
      a0 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(rows[t] + i), a0);
      a1 = _mm256_fmadd_ps(wt, _mm256_loadu_ps(rows[t] + i + 8), a1);
    }
    _mm256_storeu_ps(dst + i, a0);
    _mm256_storeu_ps(dst + i + 8, a1);
  }
  for (; i < n; ++i) {
    float a = 0.0f;
    for (int64_t t = 0; t < ntaps; ++t) a += w[t] * rows[t][i];
    dst[i] = a;
  }
}
#endif

template <typename T, typename Acc = typename acc_type<T>::type>
void run(const T* x, const Acc* wy_all, const Acc* wx_all, const SeparableGeometry& g, T* out) {
  const int64_t H = g.H, W = g.W, ky = g.ky, kx = g.kx, ry = ky / 2, rx = kx / 2;
  int64_t xlo, xhi, ylo, yhi;
  interior(W, kx, &xlo, &xhi);
  interior(H, ky, &ylo, &yhi);
#pragma omp parallel
  {
    std::vector<Acc> tmp(static_cast<size_t>(H * W));
    std::vector<Acc> row(static_cast<size_t>(W));
#ifdef HK_CPU_AVX2
    constexpr bool kFloat = std::is_same<T, float>::value;
    const bool avx2 = kFloat && cpu_has_avx2();
    std::vector<const float*> rows(static_cast<size_t>(ky > kx ? ky : kx));
    std::vector<float> wv(rows.size());
    std::vector<float> padded_row(static_cast<size_t>(avx2 ? W + 2 * rx : 0));
#endif
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < g.B * g.C; ++plane) {
      const int64_t b = plane / g.C, c = plane % g.C;
      const Acc* wy = wy_all + b * ky;
      const Acc* wx = wx_all + b * kx;
      const T* src = x + b * g.sx[0] + c * g.sx[1];
      const int64_t sh = g.sx[2], sw = g.sx[3];
      T* dst = out + plane * H * W;
      Acc* tp = tmp.data();
      if (!g.adjoint) {
        // Along W: tmp[y, :] = correlate(x[y, :], wx).
        for (int64_t y = 0; y < H; ++y) {
          const T* s = src + y * sh;
          Acc* o = tp + y * W;
#ifdef HK_CPU_AVX2
          if constexpr (kFloat) {
            if (avx2) {  // pad the row once, then every output (borders too) is a straight FMA run
              float* pr = padded_row.data();
              if (sw == 1) {
                std::memcpy(pr + rx, s, sizeof(float) * W);
              } else {
                for (int64_t q = 0; q < W; ++q) pr[rx + q] = s[q * sw];
              }
              for (int64_t q = 0; q < rx; ++q) {  // the 2 rx padded entries
                const int64_t jl = filter::pad_index(q - rx, W, g.pad), jr = filter::pad_index(W + q, W, g.pad);
                pr[q] = jl < 0 ? 0.0f : s[jl * sw];
                pr[W + rx + q] = jr < 0 ? 0.0f : s[jr * sw];
              }
              for (int64_t t = 0; t < kx; ++t) rows[t] = pr + t;
              taps_avx2(rows.data(), wx, kx, W, o);
              continue;
            }
          }
#endif
          for (int64_t i = xlo; i < xhi; ++i) o[i] = Acc(0);
          for (int64_t t = 0; t < kx; ++t) {
            const Acc w = wx[t];
            if (sw == 1) {  // the common, vectorisable case
              const T* __restrict__ st = s + t - rx;
              for (int64_t i = xlo; i < xhi; ++i) o[i] += w * load_as<Acc>(st[i]);
            } else {
              for (int64_t i = xlo; i < xhi; ++i) o[i] += w * load_as<Acc>(s[(i + t - rx) * sw]);
            }
          }
          for (int64_t i = 0; i < W; ++i) {
            if (i == xlo) i = xhi;
            if (i >= W) break;
            o[i] = correlate_at(s, sw, W, wx, kx, g.pad, i);
          }
        }
        // Along H: out[y, :] = sum_t wy[t] tmp[pad(y + t - ry), :].
        for (int64_t y = 0; y < H; ++y) {
#ifdef HK_CPU_AVX2
          if constexpr (kFloat) {
            if (avx2) {
              int64_t n = 0;  // taps that read a row (zero padding drops the others)
              for (int64_t t = 0; t < ky; ++t) {
                const int64_t j = filter::pad_index(y + t - ry, H, g.pad);
                if (j < 0) continue;
                rows[n] = tp + j * W;
                wv[n++] = wy[t];
              }
              taps_avx2(rows.data(), wv.data(), n, W, reinterpret_cast<float*>(dst) + y * W);
              continue;
            }
          }
#endif
          Acc* a = row.data();
          for (int64_t i = 0; i < W; ++i) a[i] = Acc(0);
          for (int64_t t = 0; t < ky; ++t) {
            const int64_t j = filter::pad_index(y + t - ry, H, g.pad);
            if (j < 0) continue;
            const Acc* __restrict__ s = tp + j * W;
            const Acc w = wy[t];
            for (int64_t i = 0; i < W; ++i) a[i] += w * s[i];
          }
          for (int64_t i = 0; i < W; ++i) dst[y * W + i] = store_from<T>::cvt(a[i]);
        }
      } else {
        // Adjoint along H: tmp[m, :] = sum over the preimages of row m (folded at the borders).
        for (int64_t m = 0; m < H; ++m) {
          Acc* o = tp + m * W;
          if (m >= ylo && m < yhi) {
            for (int64_t i = 0; i < W; ++i) o[i] = Acc(0);
            for (int64_t t = 0; t < ky; ++t) {
              const T* __restrict__ s = src + (m - t + ry) * sh;
              const Acc w = wy[t];
              if (sw == 1) {
                for (int64_t i = 0; i < W; ++i) o[i] += w * load_as<Acc>(s[i]);
              } else {
                for (int64_t i = 0; i < W; ++i) o[i] += w * load_as<Acc>(s[i * sw]);
              }
            }
          } else {
            for (int64_t i = 0; i < W; ++i)
              o[i] = correlate_adjoint_at(src + i * sw, sh, H, wy, ky, g.pad, m);
          }
        }
        // Adjoint along W.
        for (int64_t y = 0; y < H; ++y) {
          const Acc* s = tp + y * W;
          Acc* a = row.data();
          for (int64_t m = xlo; m < xhi; ++m) a[m] = Acc(0);
          for (int64_t t = 0; t < kx; ++t) {
            const Acc w = wx[t];
            const Acc* __restrict__ st = s + rx - t;
            for (int64_t m = xlo; m < xhi; ++m) a[m] += w * st[m];
          }
          for (int64_t m = 0; m < W; ++m) {
            if (m == xlo) m = xhi;
            if (m >= W) break;
            a[m] = correlate_adjoint_at(s, int64_t(1), W, wx, kx, g.pad, m);
          }
          for (int64_t i = 0; i < W; ++i) dst[y * W + i] = store_from<T>::cvt(a[i]);
        }
      }
    }
  }
}

}  // namespace

void separable_filter_cpu(DType dtype, const void* x, const void* wy, const void* wx,
                          const SeparableGeometry& g, void* out) {
  const auto* fy = static_cast<const float*>(wy);
  const auto* fx = static_cast<const float*>(wx);
  switch (dtype) {
    case kFloat32: run(static_cast<const float*>(x), fy, fx, g, static_cast<float*>(out)); break;
    case kFloat64:
      run(static_cast<const double*>(x), static_cast<const double*>(wy),
          static_cast<const double*>(wx), g, static_cast<double*>(out));
      break;
    case kFloat16: run(static_cast<const half_t*>(x), fy, fx, g, static_cast<half_t*>(out)); break;
    case kBFloat16: run(static_cast<const bf16_t*>(x), fy, fx, g, static_cast<bf16_t*>(out)); break;
  }
}

}  // namespace hk
