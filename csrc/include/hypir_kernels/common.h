// Torch-free helpers shared by the CPU loops and the CUDA kernels.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define HK_HD __host__ __device__ __forceinline__
#else
#define HK_HD inline
#endif

namespace hk {

// Storage dtypes understood by the launchers (the binding maps at::ScalarType onto these).
enum DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// 16-bit storage types as raw bits, so the headers need neither c10 nor cuda_fp16.
struct half_t { uint16_t bits; };
struct bf16_t { uint16_t bits; };

HK_HD float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
HK_HD uint32_t float_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

// IEEE binary16 -> binary32, exact (normals, subnormals, inf, nan).
HK_HD float half_to_float(uint16_t h) {
  const uint32_t w = uint32_t(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  // Normals: shift the exponent/mantissa into place and rescale by 2^-112.
  const float normalized = bits_to_float((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  // Subnormals: use the float unit to normalise via a magic bias.
  const float denormalized = bits_to_float((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t result =
      sign | (two_w < (1u << 27) ? float_to_bits(denormalized) : float_to_bits(normalized));
  return bits_to_float(result);
}

// IEEE binary32 -> binary16 with round-to-nearest-even; overflow gives inf, nan stays nan.
HK_HD uint16_t float_to_half(float f) {
  float base = (f < 0 ? -f : f) * 0x1.0p+112f * 0x1.0p-110f;
  const uint32_t w = float_to_bits(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = bits_to_float((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = float_to_bits(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return uint16_t((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

HK_HD float bf16_to_float(uint16_t b) { return bits_to_float(uint32_t(b) << 16); }

// binary32 -> bfloat16, round-to-nearest-even; nan stays a quiet nan.
HK_HD uint16_t float_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// Precision-explicit math: float stays float, double stays double, on host and device.
HK_HD float math_exp(float x) { return expf(x); }
HK_HD double math_exp(double x) { return exp(x); }
HK_HD float math_sin(float x) { return sinf(x); }
HK_HD double math_sin(double x) { return sin(x); }

// Accumulation type: fp32 for every storage type except float64.
template <typename T> struct acc_type { using type = float; };
template <> struct acc_type<double> { using type = double; };

template <typename Acc> HK_HD Acc load_as(float v) { return Acc(v); }
template <typename Acc> HK_HD Acc load_as(double v) { return Acc(v); }
template <typename Acc> HK_HD Acc load_as(half_t v) { return Acc(half_to_float(v.bits)); }
template <typename Acc> HK_HD Acc load_as(bf16_t v) { return Acc(bf16_to_float(v.bits)); }

template <typename T> struct store_from;
template <> struct store_from<float> { template <typename A> HK_HD static float cvt(A a) { return float(a); } };
template <> struct store_from<double> { template <typename A> HK_HD static double cvt(A a) { return double(a); } };
template <> struct store_from<half_t> {
  template <typename A> HK_HD static half_t cvt(A a) { return half_t{float_to_half(float(a))}; }
};
template <> struct store_from<bf16_t> {
  template <typename A> HK_HD static bf16_t cvt(A a) { return bf16_t{float_to_bf16(float(a))}; }
};

}  // namespace hk
