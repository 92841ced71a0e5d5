// Seeded additive Gaussian noise, shared by the CPU loop and the CUDA kernel: for x [B, N]
// contiguous, out[b, e] = x[b, e] + sigma[b] * z, z = philox::normals(seed, offsets[b], e / 4)[e % 4].
#pragma once
#include "hypir_kernels/philox.h"

namespace hk {

struct NoiseGeometry {
  int64_t B, N;  // samples, elements per sample
  uint64_t seed;
};

namespace noise {

template <typename T, typename Acc = typename acc_type<T>::type>
HK_HD void add_group(const T* x, T* out, const NoiseGeometry& g, int64_t b, uint64_t offset, double sigma, int64_t group) {
  float z[4];
  philox::normals(g.seed, offset, uint64_t(group), z);
  for (int lane = 0; lane < 4; ++lane) {
    const int64_t e = 4 * group + lane;
    if (e >= g.N) break;
    const int64_t i = b * g.N + e;
    out[i] = store_from<T>::cvt(load_as<Acc>(x[i]) + Acc(sigma) * Acc(z[lane]));
  }
}

}  // namespace noise
}  // namespace hk
