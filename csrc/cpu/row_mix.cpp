// CPU launcher for the row mixing of filter2d's row-spectral path: each output row of a
// [B, C, H, F] complex plane is a per-sample, per-frequency weighted sum of k input rows,
//   forward  out[y] = sum_t taps[b, t] * x[pad(y + t - r)]
//   adjoint  out[m] = sum over (y, t) with pad(y + t - r) == m of conj(taps[b, t]) * x[y]
// (r = k / 2; pad() is filter::pad_index, so the adjoint folds the border back). The row lists
// are built once per call; a task is one (plane, chunk of frequencies) and keeps its
// accumulators in registers (float32: AVX-512 or AVX2, chosen at run time) or in a chunk-sized
// buffer (portable loops, float64).
#include <type_traits>
#include <vector>
#include "cpu_features.h"
#include "hypir_kernels/launch.h"

namespace hk {
namespace {

constexpr int64_t kChunk = 64;  // complex bins per task

struct Term {
  int64_t row, tap;
};

// terms of output row i: terms[start[i] .. start[i + 1]).
void build_terms(const RowMixGeometry& g, std::vector<int64_t>* start, std::vector<Term>* terms) {
  const int64_t r = g.k / 2;
  std::vector<std::vector<Term>> lists(static_cast<size_t>(g.H));
  for (int64_t y = 0; y < g.H; ++y)
    for (int64_t t = 0; t < g.k; ++t) {
      const int64_t j = filter::pad_index(y + t - r, g.H, g.pad);
      if (j < 0) continue;  // zeros padding
      if (g.adjoint)
        lists[j].push_back({y, t});
      else
        lists[y].push_back({j, t});
    }
  start->assign(1, 0);
  for (const auto& l : lists) {
    terms->insert(terms->end(), l.begin(), l.end());
    start->push_back(static_cast<int64_t>(terms->size()));
  }
}

// One task, portable: taps split into real/imaginary rows for the chunk (conjugated for the
// adjoint) so the bin loop is a plain multiply-add the compiler vectorises.
template <typename T>
void mix_chunk(const T* x, const T* taps, const RowMixGeometry& g, const std::vector<int64_t>& start,
               const std::vector<Term>& terms, int64_t b, int64_t plane, int64_t f0, int64_t n, T* out) {
  std::vector<T> wr(g.k * n), wi(g.k * n), ar(n), ai(n);
  const T sign = g.adjoint ? T(-1) : T(1);
  for (int64_t t = 0; t < g.k; ++t)
    for (int64_t f = 0; f < n; ++f) {
      wr[t * n + f] = taps[((b * g.k + t) * g.F + f0 + f) * 2];
      wi[t * n + f] = sign * taps[((b * g.k + t) * g.F + f0 + f) * 2 + 1];
    }
  for (int64_t i = 0; i < g.H; ++i) {
    for (int64_t f = 0; f < n; ++f) ar[f] = ai[f] = T(0);
    for (int64_t e = start[i]; e < start[i + 1]; ++e) {
      const T* xs = x + ((plane * g.H + terms[e].row) * g.F + f0) * 2;
      const T* kr = wr.data() + terms[e].tap * n;
      const T* ki = wi.data() + terms[e].tap * n;
      for (int64_t f = 0; f < n; ++f) {
        const T re = xs[2 * f], im = xs[2 * f + 1];
        ar[f] += kr[f] * re - ki[f] * im;
        ai[f] += kr[f] * im + ki[f] * re;
      }
    }
    T* o = out + ((plane * g.H + i) * g.F + f0) * 2;
    for (int64_t f = 0; f < n; ++f) {
      o[2 * f] = ar[f];
      o[2 * f + 1] = ai[f];
    }
  }
}

#ifdef HK_CPU_AVX2
// Taps for the SIMD loops, interleaved like the data: kd = (wr, wr) and ks = (-wi, wi) per bin
// (wi conjugated for the adjoint), so acc += kd * x + ks * swap(x) is the complex multiply-add.
// Rows padded with zeros to `width` bins.
void interleaved_taps(const float* taps, const RowMixGeometry& g, int64_t b, int64_t f0, int64_t n, int64_t width,
                      std::vector<float>* kd, std::vector<float>* ks) {
  kd->assign(g.k * width * 2, 0.0f);
  ks->assign(g.k * width * 2, 0.0f);
  const float sign = g.adjoint ? -1.0f : 1.0f;
  for (int64_t t = 0; t < g.k; ++t)
    for (int64_t f = 0; f < n; ++f) {
      const float re = taps[((b * g.k + t) * g.F + f0 + f) * 2];
      const float im = sign * taps[((b * g.k + t) * g.F + f0 + f) * 2 + 1];
      float* d = kd->data() + (t * width + f) * 2;
      float* s = ks->data() + (t * width + f) * 2;
      d[0] = d[1] = re;
      s[0] = -im;
      s[1] = im;
    }
}

// One task, float32 AVX2: 16 bins (4 registers) per pass, two accumulator sets (the real-tap and
// imaginary-tap products) as independent FMA chains.
__attribute__((target("avx2,fma"))) void mix_chunk_avx2(const float* x, const float* taps, const RowMixGeometry& g,
                                                        const std::vector<int64_t>& start,
                                                        const std::vector<Term>& terms, int64_t b, int64_t plane,
                                                        int64_t f0, int64_t n, float* out) {
  const int64_t width = (n + 15) / 16 * 16;
  std::vector<float> kd, ks;
  interleaved_taps(taps, g, b, f0, n, width, &kd, &ks);
  float tail[32];
  for (int64_t i = 0; i < g.H; ++i) {
    float* o = out + ((plane * g.H + i) * g.F + f0) * 2;
    for (int64_t p = 0; p < n; p += 16) {
      const int64_t m = n - p < 16 ? n - p : 16;  // bins in this pass
      __m256 a[4], c[4];
      for (int v = 0; v < 4; ++v) a[v] = c[v] = _mm256_setzero_ps();
      for (int64_t e = start[i]; e < start[i + 1]; ++e) {
        const float* src = x + ((plane * g.H + terms[e].row) * g.F + f0 + p) * 2;
        const float* d = kd.data() + (terms[e].tap * width + p) * 2;
        const float* s = ks.data() + (terms[e].tap * width + p) * 2;
        if (m < 16) {  // last, partial pass: stage the input so no load runs past the row
          for (int64_t q = 0; q < 32; ++q) tail[q] = q < 2 * m ? src[q] : 0.0f;
          src = tail;
        }
        for (int v = 0; v < 4; ++v) {
          const __m256 xv = _mm256_loadu_ps(src + 8 * v);
          a[v] = _mm256_fmadd_ps(_mm256_loadu_ps(d + 8 * v), xv, a[v]);
          c[v] = _mm256_fmadd_ps(_mm256_loadu_ps(s + 8 * v), _mm256_permute_ps(xv, 0xB1), c[v]);
        }
      }
      for (int v = 0; v < 4; ++v) _mm256_storeu_ps(tail + 8 * v, _mm256_add_ps(a[v], c[v]));
      for (int64_t q = 0; q < 2 * m; ++q) o[2 * p + q] = tail[q];
    }
  }
}

// AVX-512F, NC channels of one sample at once (they share the taps). The task's rows are first
// split into planes xr, xi and xs = xr + xi, so each complex multiply-add takes three FMAs
// (Gauss's product: k1 += kr xs, k2 += (ki - kr) xr, k3 += (kr + ki) xi; re = k1 - k3,
// im = k1 + k2) instead of four multiplies plus shuffles; 32 bins (2 registers) per pass.
constexpr int64_t kPlanarChunk = 32;

template <int NC>
__attribute__((target("avx512f,avx2,fma"))) void mix_chunk_avx512(const float* x, const float* taps,
                                                                  const RowMixGeometry& g,
                                                                  const std::vector<int64_t>& start,
                                                                  const std::vector<Term>& terms, int64_t b,
                                                                  int64_t plane0, int64_t f0, int64_t n, float* out) {
  constexpr int64_t W = kPlanarChunk;
  const int64_t plane_stride = g.H * g.F * 2;
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);

  // Planes [NC][H][3][W]: xr, xi, xs per row; taps [k][3][W]: kr, ki - kr, kr + ki.
  // Per-thread scratch, kept between calls: a fresh multi-100-KB buffer per task would be mapped
  // (and page-faulted) anew each time.
  thread_local std::vector<float> planes, tp;
  planes.resize(static_cast<size_t>(NC * g.H * 3 * W));
  tp.assign(static_cast<size_t>(g.k * 3 * W), 0.0f);
  for (int ch = 0; ch < NC; ++ch)
    for (int64_t j = 0; j < g.H; ++j) {
      const float* src = x + (plane0 + ch) * plane_stride + (j * g.F + f0) * 2;
      float* dst = planes.data() + ((ch * g.H + j) * 3) * W;
      // Deinterleave 32 bins: registers q = 0..3 hold bins 8q..8q+7.
      __m512 in[4];
      for (int q = 0; q < 4; ++q) {
        const int64_t valid = 2 * n - 16 * q;
        const __mmask16 m = valid >= 16 ? __mmask16(0xFFFF) : valid <= 0 ? __mmask16(0) : __mmask16((1u << valid) - 1);
        in[q] = _mm512_maskz_loadu_ps(m, src + 16 * q);
      }
      for (int v = 0; v < 2; ++v) {
        const __m512 re = _mm512_permutex2var_ps(in[2 * v], even, in[2 * v + 1]);
        const __m512 im = _mm512_permutex2var_ps(in[2 * v], odd, in[2 * v + 1]);
        _mm512_storeu_ps(dst + 16 * v, re);
        _mm512_storeu_ps(dst + W + 16 * v, im);
        _mm512_storeu_ps(dst + 2 * W + 16 * v, _mm512_add_ps(re, im));
      }
    }
  const float sign = g.adjoint ? -1.0f : 1.0f;
  for (int64_t t = 0; t < g.k; ++t)
    for (int64_t f = 0; f < n; ++f) {
      const float kr = taps[((b * g.k + t) * g.F + f0 + f) * 2];
      const float ki = sign * taps[((b * g.k + t) * g.F + f0 + f) * 2 + 1];
      tp[(t * 3) * W + f] = kr;
      tp[(t * 3 + 1) * W + f] = ki - kr;
      tp[(t * 3 + 2) * W + f] = kr + ki;
    }

  for (int64_t i = 0; i < g.H; ++i) {
    __m512 k1[NC][2], k2[NC][2], k3[NC][2];
    for (int ch = 0; ch < NC; ++ch)
      for (int v = 0; v < 2; ++v) k1[ch][v] = k2[ch][v] = k3[ch][v] = _mm512_setzero_ps();
    for (int64_t e = start[i]; e < start[i + 1]; ++e) {
      const float* w = tp.data() + terms[e].tap * 3 * W;
      for (int v = 0; v < 2; ++v) {
        const __m512 a = _mm512_loadu_ps(w + 16 * v), p = _mm512_loadu_ps(w + W + 16 * v),
                     q = _mm512_loadu_ps(w + 2 * W + 16 * v);
        for (int ch = 0; ch < NC; ++ch) {
          const float* r = planes.data() + ((ch * g.H + terms[e].row) * 3) * W + 16 * v;
          k1[ch][v] = _mm512_fmadd_ps(a, _mm512_loadu_ps(r + 2 * W), k1[ch][v]);
          k2[ch][v] = _mm512_fmadd_ps(p, _mm512_loadu_ps(r), k2[ch][v]);
          k3[ch][v] = _mm512_fmadd_ps(q, _mm512_loadu_ps(r + W), k3[ch][v]);
        }
      }
    }
    for (int ch = 0; ch < NC; ++ch) {
      float* o = out + (plane0 + ch) * plane_stride + (i * g.F + f0) * 2;
      for (int v = 0; v < 2; ++v) {
        const __m512 re = _mm512_sub_ps(k1[ch][v], k3[ch][v]), im = _mm512_add_ps(k1[ch][v], k2[ch][v]);
        for (int h = 0; h < 2; ++h) {
          const int64_t valid = 2 * n - 32 * v - 16 * h;
          if (valid <= 0) continue;
          const __mmask16 m = valid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << valid) - 1);
          _mm512_mask_storeu_ps(o + 32 * v + 16 * h, m, _mm512_permutex2var_ps(re, h ? hi : lo, im));
        }
      }
    }
  }
}
#endif

template <typename T>
void run(const T* x, const T* taps, const RowMixGeometry& g, T* out) {
  std::vector<int64_t> start;
  std::vector<Term> terms;
  build_terms(g, &start, &terms);
  const bool avx2 = std::is_same_v<T, float> && cpu_has_avx2();
  const bool avx512 = std::is_same_v<T, float> && cpu_has_avx512();
#ifdef HK_CPU_AVX2
  const int64_t chunk = avx512 ? kPlanarChunk : kChunk;
#else
  const int64_t chunk = kChunk;
#endif
  const int64_t chunks = (g.F + chunk - 1) / chunk;
  // A task: one chunk of frequencies for a group of up to kGroup channels of one sample.
  constexpr int64_t kGroup = 3;
  const int64_t groups = (g.C + kGroup - 1) / kGroup;
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < g.B * groups * chunks; ++task) {
    const int64_t b = task / (groups * chunks), c0 = (task / chunks) % groups * kGroup;
    const int64_t nc = g.C - c0 < kGroup ? g.C - c0 : kGroup;
    const int64_t f0 = (task % chunks) * chunk;
    const int64_t n = g.F - f0 < chunk ? g.F - f0 : chunk;
    const int64_t plane0 = b * g.C + c0;
#ifdef HK_CPU_AVX2
    if constexpr (std::is_same_v<T, float>) {
      if (avx512) {
        if (nc == 3) mix_chunk_avx512<3>(x, taps, g, start, terms, b, plane0, f0, n, out);
        else if (nc == 2) mix_chunk_avx512<2>(x, taps, g, start, terms, b, plane0, f0, n, out);
        else mix_chunk_avx512<1>(x, taps, g, start, terms, b, plane0, f0, n, out);
        continue;
      }
      if (avx2) {
        for (int64_t ch = 0; ch < nc; ++ch) mix_chunk_avx2(x, taps, g, start, terms, b, plane0 + ch, f0, n, out);
        continue;
      }
    }
#endif
    (void)avx2, (void)avx512;
    for (int64_t ch = 0; ch < nc; ++ch) mix_chunk(x, taps, g, start, terms, b, plane0 + ch, f0, n, out);
  }
}

}  // namespace

void mix_rows_cpu(bool fp64, const void* x, const void* taps, const RowMixGeometry& g, void* out) {
  if (fp64)
    run(static_cast<const double*>(x), static_cast<const double*>(taps), g, static_cast<double*>(out));
  else
    run(static_cast<const float*>(x), static_cast<const float*>(taps), g, static_cast<float*>(out));
}

}  // namespace hk
