// Philox4x32-10 counter-based generator (Salmon et al., SC'11; the generator of Random123,
// cuRAND, torch and Triton) and the mask decisions built on it. Torch-free, HOST_DEVICE: the CPU
// loop and the CUDA kernel draw bit-identical numbers for the same (seed, offset, element).
#pragma once
#include "hypir_kernels/common.h"

namespace hk {
namespace philox {

struct u32x4 {
  uint32_t v[4];
};

HK_HD uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t p = uint64_t(a) * uint64_t(b);
  *hi = uint32_t(p >> 32);
  return uint32_t(p);
}

// Ten rounds; the key is bumped by the Weyl constants between rounds.
HK_HD u32x4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
    const uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return u32x4{{c0, c1, c2, c3}};
}

// The four 32-bit draws for elements 4*group .. 4*group+3 of the sample with stream `offset`:
// counter (group, offset), key = seed.
HK_HD u32x4 draws(uint64_t seed, uint64_t offset, uint64_t group) {
  return philox4x32_10(uint32_t(group), uint32_t(group >> 32), uint32_t(offset), uint32_t(offset >> 32),
                       uint32_t(seed), uint32_t(seed >> 32));
}

// Keep decision: the draw's top 24 bits against a threshold keep_probability * 2^24. A further
// (Ambient) mask uses a lower threshold on the same draw, so it is a subset of the first.
HK_HD bool keep(uint32_t draw, uint32_t threshold24) { return (draw >> 8) < threshold24; }

}  // namespace philox
}  // namespace hk

namespace hk {
namespace philox {

// Gaussian draws for elements 4*group .. 4*group+3: Box-Muller on the block's four words, in a
// counter space disjoint from the mask draws (top bit of the counter's second word set), so
// noise and masks from one seed are independent.
HK_HD void normals(uint64_t seed, uint64_t offset, uint64_t group, float z[4]) {
  const u32x4 r = philox4x32_10(uint32_t(group), uint32_t(group >> 32) | 0x80000000u, uint32_t(offset),
                                uint32_t(offset >> 32), uint32_t(seed), uint32_t(seed >> 32));
  for (int p = 0; p < 2; ++p) {
    const float u1 = (float(r.v[2 * p] >> 8) + 1.0f) * 0x1.0p-24f;  // (0, 1]
    const float u2 = float(r.v[2 * p + 1] >> 8) * 0x1.0p-24f;      // [0, 1)
    const float radius = sqrtf(-2.0f * logf(u1));
    const float angle = 6.2831853071795865f * u2;
    z[2 * p] = radius * cosf(angle);
    z[2 * p + 1] = radius * sinf(angle);
  }
}

}  // namespace philox
}  // namespace hk
