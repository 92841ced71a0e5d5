// CUDA launcher for tiled-overlap blending: one thread per output element, the gather and the
// weights come from hk::blend::blend_pixel (the code the CPU tests exercise). Torch-free.
#include <cuda_runtime.h>
#include "hypir_kernels/launch.h"

namespace hk {
namespace {

template <typename T>
__global__ void blend_tiles_kernel(const T* __restrict__ tiles, const int64_t* __restrict__ ys,
                                   const int64_t* __restrict__ xs, blend::Geometry g,
                                   T* __restrict__ out) {
  const int64_t total = g.B * g.C * g.OH * g.OW;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t x = i % g.OW;
    const int64_t y = (i / g.OW) % g.OH;
    const int64_t c = (i / (g.OW * g.OH)) % g.C;
    const int64_t b = i / (g.OW * g.OH * g.C);
    out[i] = store_from<T>::cvt(blend::blend_pixel(tiles, ys, xs, g, b, c, y, x));
  }
}

template <typename T>
int launch(const void* tiles, const int64_t* ys, const int64_t* xs, const blend::Geometry& g,
           void* out, cudaStream_t stream) {
  const int64_t total = g.B * g.C * g.OH * g.OW;
  if (total == 0) return 0;
  constexpr int kThreads = 256;
  const int64_t want = (total + kThreads - 1) / kThreads;
  const int blocks = int(want < 65535 * 32 ? want : 65535 * 32);
  blend_tiles_kernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(tiles), ys, xs, g,
                                                         static_cast<T*>(out));
  return int(cudaGetLastError());
}

}  // namespace

int blend_tiles_cuda(DType dtype, const void* tiles, const int64_t* ys, const int64_t* xs,
                     const blend::Geometry& g, void* out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case kFloat32: return launch<float>(tiles, ys, xs, g, out, s);
    case kFloat64: return launch<double>(tiles, ys, xs, g, out, s);
    case kFloat16: return launch<half_t>(tiles, ys, xs, g, out, s);
    case kBFloat16: return launch<bf16_t>(tiles, ys, xs, g, out, s);
  }
  return int(cudaErrorInvalidValue);
}

}  // namespace hk
