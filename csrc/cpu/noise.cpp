// CPU launcher for seeded Gaussian noise: OpenMP over (sample, chunk of draw groups); the
// per-group code is hk::noise::add_group, the same the CUDA kernel runs.
#include "hypir_kernels/launch.h"

namespace hk {
namespace {

constexpr int64_t kGroupsPerTask = 1024;

template <typename T>
void run(const T* x, const int64_t* offsets, const double* sigma, const NoiseGeometry& g, T* out) {
  const int64_t groups = (g.N + 3) / 4;
  const int64_t tasks = (groups + kGroupsPerTask - 1) / kGroupsPerTask;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t end = (task + 1) * kGroupsPerTask < groups ? (task + 1) * kGroupsPerTask : groups;
      for (int64_t grp = task * kGroupsPerTask; grp < end; ++grp)
        noise::add_group(x, out, g, b, uint64_t(offsets[b]), sigma[b], grp);
    }
}

}  // namespace

void add_noise_cpu(DType dtype, const void* x, const int64_t* offsets, const double* sigma, const NoiseGeometry& g,
                   void* out) {
  switch (dtype) {
    case kFloat32: return run(static_cast<const float*>(x), offsets, sigma, g, static_cast<float*>(out));
    case kFloat64: return run(static_cast<const double*>(x), offsets, sigma, g, static_cast<double*>(out));
    case kFloat16: return run(static_cast<const half_t*>(x), offsets, sigma, g, static_cast<half_t*>(out));
    case kBFloat16: return run(static_cast<const bf16_t*>(x), offsets, sigma, g, static_cast<bf16_t*>(out));
  }
}

}  // namespace hk
