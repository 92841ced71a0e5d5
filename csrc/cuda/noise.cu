// CUDA launcher for seeded Gaussian noise: one thread per (sample, draw group of four elements).
#include <cuda_runtime.h>
#include "hypir_kernels/launch.h"

namespace hk {
namespace {

template <typename T>
__global__ void add_noise_kernel(const T* __restrict__ x, const int64_t* __restrict__ offsets,
                                 const double* __restrict__ sigma, NoiseGeometry g, T* __restrict__ out, int64_t groups) {
  const int64_t total = g.B * groups;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / groups;
    noise::add_group(x, out, g, b, uint64_t(offsets[b]), sigma[b], i % groups);
  }
}

template <typename T>
int launch(const void* x, const int64_t* offsets, const double* sigma, const NoiseGeometry& g, void* out, cudaStream_t s) {
  const int64_t groups = (g.N + 3) / 4;
  const int64_t total = g.B * groups;
  if (total == 0) return 0;
  const int threads = 256;
  const int64_t blocks = (total + threads - 1) / threads;
  add_noise_kernel<T><<<static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8), threads, 0, s>>>(
      static_cast<const T*>(x), offsets, sigma, g, static_cast<T*>(out), groups);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int add_noise_cuda(DType dtype, const void* x, const int64_t* offsets, const double* sigma, const NoiseGeometry& g,
                   void* out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case kFloat32: return launch<float>(x, offsets, sigma, g, out, s);
    case kFloat64: return launch<double>(x, offsets, sigma, g, out, s);
    case kFloat16: return launch<half_t>(x, offsets, sigma, g, out, s);
    case kBFloat16: return launch<bf16_t>(x, offsets, sigma, g, out, s);
  }
  return 0;
}

}  // namespace hk
