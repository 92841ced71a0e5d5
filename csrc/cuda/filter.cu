// CUDA launcher for separable per-sample filtering and its exact adjoint: two passes, one
// thread per element, each running the header's correlate_at / correlate_adjoint_at. Torch-free.
#include <cuda_runtime.h>
#include "hypir_kernels/launch.h"

namespace hk {
namespace {

// Pass 1 reads the input (strided), writes the contiguous scratch; pass 2 the reverse.
template <typename T, typename Acc>
__global__ void separable_pass1(const T* __restrict__ x, const Acc* __restrict__ wy,
                                const Acc* __restrict__ wx, SeparableGeometry g,
                                Acc* __restrict__ tmp) {
  const int64_t total = g.B * g.C * g.H * g.W;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e % g.W, y = (e / g.W) % g.H, c = (e / (g.W * g.H)) % g.C;
    const int64_t b = e / (g.W * g.H * g.C);
    const T* plane = x + b * g.sx[0] + c * g.sx[1];
    tmp[e] = g.adjoint
                 ? filter::correlate_adjoint_at(plane + i * g.sx[3], g.sx[2], g.H, wy + b * g.ky,
                                                g.ky, g.pad, y)
                 : filter::correlate_at(plane + y * g.sx[2], g.sx[3], g.W, wx + b * g.kx, g.kx,
                                        g.pad, i);
  }
}

template <typename T, typename Acc>
__global__ void separable_pass2(const Acc* __restrict__ tmp, const Acc* __restrict__ wy,
                                const Acc* __restrict__ wx, SeparableGeometry g,
                                T* __restrict__ out) {
  const int64_t total = g.B * g.C * g.H * g.W;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e % g.W, y = (e / g.W) % g.H;
    const int64_t b = e / (g.W * g.H * g.C);
    const Acc* plane = tmp + (e / (g.W * g.H)) * g.H * g.W;
    const Acc v = g.adjoint
                      ? filter::correlate_adjoint_at(plane + y * g.W, int64_t(1), g.W,
                                                     wx + b * g.kx, g.kx, g.pad, i)
                      : filter::correlate_at(plane + i, g.W, g.H, wy + b * g.ky, g.ky, g.pad, y);
    out[e] = store_from<T>::cvt(v);
  }
}

template <typename T, typename Acc = typename acc_type<T>::type>
int launch(const void* x, const void* wy, const void* wx, const SeparableGeometry& g,
           void* scratch, void* out, cudaStream_t stream) {
  const int64_t total = g.B * g.C * g.H * g.W;
  if (total == 0) return 0;
  constexpr int kThreads = 256;
  const int64_t want = (total + kThreads - 1) / kThreads;
  const int blocks = int(want < 65535 * 32 ? want : 65535 * 32);
  const auto* fy = static_cast<const Acc*>(wy);
  const auto* fx = static_cast<const Acc*>(wx);
  auto* tmp = static_cast<Acc*>(scratch);
  separable_pass1<T, Acc><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), fy, fx, g, tmp);
  separable_pass2<T, Acc><<<blocks, kThreads, 0, stream>>>(tmp, fy, fx, g, static_cast<T*>(out));
  return int(cudaGetLastError());
}

}  // namespace

int separable_filter_cuda(DType dtype, const void* x, const void* wy, const void* wx,
                          const SeparableGeometry& g, void* scratch, void* out, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case kFloat32: return launch<float>(x, wy, wx, g, scratch, out, s);
    case kFloat64: return launch<double>(x, wy, wx, g, scratch, out, s);
    case kFloat16: return launch<half_t>(x, wy, wx, g, scratch, out, s);
    case kBFloat16: return launch<bf16_t>(x, wy, wx, g, scratch, out, s);
  }
  return int(cudaErrorInvalidValue);
}

}  // namespace hk
