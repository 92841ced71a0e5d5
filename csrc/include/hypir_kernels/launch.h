// Torch-free launcher entry points; the binding translation units (ops.cpp, cuda/ops_cuda.cpp)
// validate tensors and call these with raw pointers.
#pragma once
#include "hypir_kernels/blend.h"
#include "hypir_kernels/filter.h"
#include "hypir_kernels/mask.h"
#include "hypir_kernels/noise.h"

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

namespace hk {

// Separable per-sample filtering of x [B, C, H, W] (strides sx[4], in elements) into a
// contiguous out [B, C, H, W]: along W with taps wx [B, kx], then along H with wy [B, ky] (odd
// k; taps in the accumulation type: float64 for float64 data, else float32). adjoint=true
// applies the exact adjoint (folded borders).
struct SeparableGeometry {
  int64_t B, C, H, W, ky, kx;
  int64_t sx[4];
  int pad;
  bool adjoint;
};

void separable_filter_cpu(DType dtype, const void* x, const void* wy, const void* wx,
                          const SeparableGeometry& g, void* out);

// scratch: B*C*H*W elements of the accumulation type (device memory).
int separable_filter_cuda(DType dtype, const void* x, const void* wy, const void* wx,
                          const SeparableGeometry& g, void* scratch, void* out, void* stream);

}  // namespace hk

namespace hk {

// Random masks (hypir_kernels/mask.h): out = x * keep, out_further (if not null) = x * the
// further mask; x and the outputs contiguous [B, C, H, W].
void apply_mask_cpu(DType dtype, const void* x, const int64_t* offsets, const MaskGeometry& g, void* out,
                    void* out_further);

// The CUDA kernel's per-group code (hk::mask::apply_group) run on the CPU, one group at a time: a
// test hook for what the GPU executes. Not a fast path.
void apply_mask_cpu_groupwise(DType dtype, const void* x, const int64_t* offsets, const MaskGeometry& g, void* out,
                              void* out_further);

// offsets: device pointer.
int apply_mask_cuda(DType dtype, const void* x, const int64_t* offsets, const MaskGeometry& g, void* out,
                    void* out_further, void* stream);

}  // namespace hk

namespace hk {

// out = x + sigma[b] * Philox Gaussian noise (hypir_kernels/noise.h); x, out contiguous [B, N];
// sigma: B floats (host for the CPU launcher, device for the CUDA launcher), offsets likewise.
void add_noise_cpu(DType dtype, const void* x, const int64_t* offsets, const double* sigma, const NoiseGeometry& g,
                   void* out);
int add_noise_cuda(DType dtype, const void* x, const int64_t* offsets, const double* sigma, const NoiseGeometry& g,
                   void* out, void* stream);

}  // namespace hk

namespace hk {

// filter2d on the CPU, fused (cpu/filter2d_fft.cpp), or its exact adjoint: x, out contiguous
// [B, C, H, W] float32 or float64; taps [B, k, F] interleaved complex of the same precision,
// F = n / 2 + 1: conj(FFT_n(kernel[b, :, t])) / n, the FFT along H of length n = 2^a 3^b >= H + k - 1.
struct Filter2dGeometry {
  int64_t B, C, H, W, k, n;
  int pad;
  bool adjoint;
};

void filter2d_fft_cpu(bool fp64, const void* x, const void* taps, const Filter2dGeometry& g, void* out);

}  // namespace hk

namespace hk {

// GroupNorm with an optional fused SiLU (cpu/group_norm.cpp): x viewed as [N, C, L] (NCHW,
// contiguous) or, with channels_last, [N, L, C] (contiguous in that order); G groups of C / G
// channels; statistics in fp32.
struct GroupNormGeometry {
  int64_t N, C, L, G;
  double eps;
  bool channels_last, silu;
};

// y = act((x - mean) * rstd * w + b), same layout as x; mean, rstd: [N * G] fp32 out. w, b: C
// floats or null (1 and 0). dtype: float32, float16 or bfloat16.
void group_norm_silu_cpu(DType dtype, const void* x, const float* w, const float* b, const GroupNormGeometry& g,
                         void* y, float* mean, float* rstd);

// The gradients of the above for upstream dy (x's layout): dx (x's layout), dw and db (C floats
// each, or null when not wanted).
void group_norm_silu_backward_cpu(DType dtype, const void* dy, const void* x, const float* w, const float* b,
                                  const float* mean, const float* rstd, const GroupNormGeometry& g, void* dx,
                                  float* dw, float* db);

}  // namespace hk
