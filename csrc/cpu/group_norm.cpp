// CPU GroupNorm with an optional fused SiLU, forward and backward (launch.h). fp32 statistics and
// arithmetic for float32/bfloat16/float16 storage.
//
// Why it beats F.group_norm + F.silu: the pair makes five passes over memory (read for the
// statistics, read + write to normalise, read + write for the SiLU); this makes three, and for
// NCHW inputs the normalising pass re-reads a group the statistics pass has just brought into
// cache. The loops (group_norm_lanes.inc) are compiled twice: AVX-512 (chosen at run time, as in
// cpu_features.h) and portable.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu_features.h"
#include "hypir_kernels/launch.h"

namespace hk {
namespace {

#ifdef HK_CPU_AVX2
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")
#pragma GCC diagnostic push
// GCC 12 reports the deliberately undefined pass-through operand of its own masked intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
namespace gn_avx512 {

using R = __m512;
constexpr int64_t W = 16;

struct V {
  static inline __mmask16 mask(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }
  static inline R zero() { return _mm512_setzero_ps(); }
  static inline R set1(float v) { return _mm512_set1_ps(v); }
  static inline R add(R a, R b) { return _mm512_add_ps(a, b); }
  static inline R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static inline R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static inline R fmadd(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static inline float sum(R a) { return _mm512_reduce_add_ps(a); }
  static inline R zero_beyond(R a, int64_t n) { return _mm512_maskz_mov_ps(mask(n), a); }

  static inline R loadf(const float* p) { return _mm512_loadu_ps(p); }
  static inline R loadf_n(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static inline void storef(float* p, R v) { _mm512_storeu_ps(p, v); }
  static inline void storef_n(float* p, R v, int64_t n) { _mm512_mask_storeu_ps(p, mask(n), v); }

  static inline R widen_bf16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static inline __m256i narrow_bf16(R v) {  // round to nearest even; nan stays a quiet nan
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
    return _mm512_cvtepi32_epi16(r);
  }
  static inline __m256i narrow_half(R v) { return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

  static inline R load(const float* p) { return loadf(p); }
  static inline R load(const bf16_t* p) { return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static inline R load(const half_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static inline R load_n(const float* p, int64_t n) { return loadf_n(p, n); }
  static inline R load_n(const bf16_t* p, int64_t n) { return widen_bf16(_mm256_maskz_loadu_epi16(mask(n), p)); }
  static inline R load_n(const half_t* p, int64_t n) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask(n), p)); }
  static inline void store(float* p, R v) { storef(p, v); }
  static inline void store(bf16_t* p, R v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), narrow_bf16(v)); }
  static inline void store(half_t* p, R v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), narrow_half(v)); }
  static inline void store_n(float* p, R v, int64_t n) { storef_n(p, v, n); }
  static inline void store_n(bf16_t* p, R v, int64_t n) { _mm256_mask_storeu_epi16(p, mask(n), narrow_bf16(v)); }
  static inline void store_n(half_t* p, R v, int64_t n) { _mm256_mask_storeu_epi16(p, mask(n), narrow_half(v)); }

  // exp(x): x = k ln2 + r, |r| <= ln2 / 2, a degree-6 polynomial for e^r (Cephes' expf
  // coefficients, ~1 ulp), then scaled by 2^k. Clamped to [-87.3, 88.7].
  static inline R exp(R x) {
    x = _mm512_min_ps(_mm512_max_ps(x, set1(-87.3f)), set1(88.7f));
    const R k = _mm512_roundscale_ps(mul(x, set1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    R r = fmadd(k, set1(-0.693359375f), x);
    r = fmadd(k, set1(2.12194440e-4f), r);
    R p = set1(1.9875691500e-4f);
    p = fmadd(p, r, set1(1.3981999507e-3f));
    p = fmadd(p, r, set1(8.3334519073e-3f));
    p = fmadd(p, r, set1(4.1665795894e-2f));
    p = fmadd(p, r, set1(1.6666665459e-1f));
    p = fmadd(p, r, set1(5.0000001201e-1f));
    p = fmadd(p, mul(r, r), add(r, set1(1.f)));
    return _mm512_scalef_ps(p, k);
  }
  // 1 / d for d in [1, inf]: the 14-bit estimate and one Newton step (~1 ulp), several times the
  // throughput of a division.
  static inline R reciprocal(R d) {
    const R r = _mm512_rcp14_ps(d);
    return mul(r, _mm512_fnmadd_ps(d, r, set1(2.f)));
  }
  static inline R sigmoid(R z) { return reciprocal(add(set1(1.f), exp(sub(zero(), z)))); }
  static inline R silu(R z) { return mul(z, sigmoid(z)); }
};

#include "group_norm_lanes.inc"

}  // namespace gn_avx512
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif

namespace gn_portable {

using R = float;
constexpr int64_t W = 1;

struct V {
  static inline R zero() { return 0.f; }
  static inline R set1(float v) { return v; }
  static inline R add(R a, R b) { return a + b; }
  static inline R sub(R a, R b) { return a - b; }
  static inline R mul(R a, R b) { return a * b; }
  static inline R fmadd(R a, R b, R c) { return a * b + c; }
  static inline float sum(R a) { return a; }
  static inline R zero_beyond(R a, int64_t n) { return n > 0 ? a : 0.f; }
  static inline R loadf(const float* p) { return *p; }
  static inline R loadf_n(const float* p, int64_t n) { return n > 0 ? *p : 0.f; }
  static inline void storef(float* p, R v) { *p = v; }
  static inline void storef_n(float* p, R v, int64_t n) { if (n > 0) *p = v; }
  template <typename T> static inline R load(const T* p) { return load_as<float>(*p); }
  template <typename T> static inline R load_n(const T* p, int64_t n) { return n > 0 ? load_as<float>(*p) : 0.f; }
  template <typename T> static inline void store(T* p, R v) { *p = store_from<T>::cvt(v); }
  template <typename T> static inline void store_n(T* p, R v, int64_t n) { if (n > 0) *p = store_from<T>::cvt(v); }
  static inline R sigmoid(R z) { return 1.f / (1.f + std::exp(-z)); }
  static inline R silu(R z) { return z / (1.f + std::exp(-z)); }
};

#include "group_norm_lanes.inc"

}  // namespace gn_portable

// AVX-512 with the BW/VL/DQ extensions the masked 16-bit loads need.
bool use_avx512() {
#ifdef HK_CPU_AVX2
  static const bool ok = cpu_has_avx512() && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("f16c");
  return ok;
#else
  return false;
#endif
}

template <typename T>
void forward_any(const void* x, const float* w, const float* b, const GroupNormGeometry& g, void* y, float* mean,
                 float* rstd) {
#ifdef HK_CPU_AVX2
  if (use_avx512())
    return gn_avx512::forward(static_cast<const T*>(x), w, b, g, static_cast<T*>(y), mean, rstd);
#endif
  gn_portable::forward(static_cast<const T*>(x), w, b, g, static_cast<T*>(y), mean, rstd);
}

template <typename T>
void backward_any(const void* dy, const void* x, const float* w, const float* b, const float* mean, const float* rstd,
                  const GroupNormGeometry& g, void* dx, double* dsum, double* dxsum) {
#ifdef HK_CPU_AVX2
  if (use_avx512())
    return gn_avx512::backward(static_cast<const T*>(dy), static_cast<const T*>(x), w, b, mean, rstd, g,
                               static_cast<T*>(dx), dsum, dxsum);
#endif
  gn_portable::backward(static_cast<const T*>(dy), static_cast<const T*>(x), w, b, mean, rstd, g, static_cast<T*>(dx),
                        dsum, dxsum);
}

}  // namespace

void group_norm_silu_cpu(DType dtype, const void* x, const float* w, const float* b, const GroupNormGeometry& g,
                         void* y, float* mean, float* rstd) {
  switch (dtype) {
    case kFloat32: return forward_any<float>(x, w, b, g, y, mean, rstd);
    case kFloat16: return forward_any<half_t>(x, w, b, g, y, mean, rstd);
    case kBFloat16: return forward_any<bf16_t>(x, w, b, g, y, mean, rstd);
    case kFloat64: break;  // the binding rejects it
  }
}

void group_norm_silu_backward_cpu(DType dtype, const void* dy, const void* x, const float* w, const float* b,
                                  const float* mean, const float* rstd, const GroupNormGeometry& g, void* dx,
                                  float* dw, float* db) {
  std::vector<double> dsum(size_t(g.N * g.C)), dxsum(size_t(g.N * g.C));
  switch (dtype) {
    case kFloat32: backward_any<float>(dy, x, w, b, mean, rstd, g, dx, dsum.data(), dxsum.data()); break;
    case kFloat16: backward_any<half_t>(dy, x, w, b, mean, rstd, g, dx, dsum.data(), dxsum.data()); break;
    case kBFloat16: backward_any<bf16_t>(dy, x, w, b, mean, rstd, g, dx, dsum.data(), dxsum.data()); break;
    case kFloat64: return;
  }
  for (int64_t c = 0; c < g.C; ++c) {
    double sw = 0, sb = 0;
    for (int64_t n = 0; n < g.N; ++n) {
      sw += dxsum[size_t(n * g.C + c)];
      sb += dsum[size_t(n * g.C + c)];
    }
    if (dw) dw[c] = float(sw);
    if (db) db[c] = float(sb);
  }
}

}  // namespace hk
