// CUDA launcher for random masks: one thread per (sample, draw group of four elements); the
// per-group code is hk::mask::apply_group, the same the CPU loop runs.
#include <cuda_runtime.h>
#include "hypir_kernels/launch.h"

namespace hk {
namespace {

template <typename T>
__global__ void apply_mask_kernel(const T* __restrict__ x, const int64_t* __restrict__ offsets, MaskGeometry g,
                                  T* __restrict__ out, T* __restrict__ out_further, int64_t groups) {
  const int64_t total = g.B * groups;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / groups;
    mask::apply_group(x, out, out_further, g, b, uint64_t(offsets[b]), i % groups);
  }
}

template <typename T>
int launch(const void* x, const int64_t* offsets, const MaskGeometry& g, void* out, void* out_further, cudaStream_t s) {
  const int64_t groups = (mask::drawn_per_sample(g) + 3) / 4;
  const int64_t total = g.B * groups;
  if (total == 0) return 0;
  const int threads = 256;
  const int64_t blocks = (total + threads - 1) / threads;
  apply_mask_kernel<T><<<static_cast<unsigned>(blocks < 65535 * 8 ? blocks : 65535 * 8), threads, 0, s>>>(
      static_cast<const T*>(x), offsets, g, static_cast<T*>(out), static_cast<T*>(out_further), groups);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int apply_mask_cuda(DType dtype, const void* x, const int64_t* offsets, const MaskGeometry& g, void* out,
                    void* out_further, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case kFloat64: return launch<uint64_t>(x, offsets, g, out, out_further, s);
    case kFloat32: return launch<uint32_t>(x, offsets, g, out, out_further, s);
    default: return launch<uint16_t>(x, offsets, g, out, out_further, s);
  }
}

}  // namespace hk
