// Torch-free launcher entry points; the binding translation units (ops.cpp, cuda/ops_cuda.cpp)
// validate tensors and call these with raw pointers.
#pragma once
#include "hypir_kernels/blend.h"

namespace hk {

// ys/xs: host pointers for the CPU launcher, device pointers for the CUDA launcher.
void blend_tiles_cpu(DType dtype, const void* tiles, const int64_t* ys, const int64_t* xs,
                     const blend::Geometry& g, void* out);

// The CUDA kernel's per-pixel code path (hk::blend::blend_pixel) run on the CPU, one pixel at a
// time: lets tier-1 tests check exactly what the GPU executes. Not a fast path.
void blend_tiles_cpu_pixelwise(DType dtype, const void* tiles, const int64_t* ys, const int64_t* xs,
                               const blend::Geometry& g, void* out);

// Returns a cudaError_t value (0 on success); `stream` is a cudaStream_t.
int blend_tiles_cuda(DType dtype, const void* tiles, const int64_t* ys, const int64_t* xs,
                     const blend::Geometry& g, void* out, void* stream);

}  // namespace hk
