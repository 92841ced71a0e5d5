// Run-time CPU feature checks for the hand-vectorised CPU loops.
#pragma once
#include <cstdlib>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HK_CPU_AVX2 1
#endif

namespace hk {

// True on CPUs with AVX2 and FMA; HYPIR_KERNELS_NO_AVX2=1 forces the portable loops (tests run
// them on AVX2 machines too).
inline bool cpu_has_avx2() {
#ifdef HK_CPU_AVX2
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          std::getenv("HYPIR_KERNELS_NO_AVX2") == nullptr;
  return has;
#else
  return false;
#endif
}

// AVX-512F (on top of AVX2): twice the lanes per instruction; HYPIR_KERNELS_NO_AVX512=1 falls
// back to the AVX2 loops.
inline bool cpu_has_avx512() {
#ifdef HK_CPU_AVX2
  static const bool has = cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
                          std::getenv("HYPIR_KERNELS_NO_AVX512") == nullptr;
  return has;
#else
  return false;
#endif
}

}  // namespace hk
