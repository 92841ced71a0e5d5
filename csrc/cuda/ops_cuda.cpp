// CUDA registrations. Compiled only when the CUDA part of the extension is built.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ops/tensor.h>
#include <vector>
#include "../binding.h"

namespace hk {
namespace {

at::Tensor blend_tiles_cuda_op(const at::Tensor& tiles, const at::Tensor& ys,
                               const at::Tensor& xs, int64_t out_h, int64_t out_w,
                               int64_t weight, int64_t overlap_y, int64_t overlap_x) {
  TORCH_CHECK_VALUE(tiles.device().is_cuda(), "tiles: expected a CUDA tensor");
  // ys/xs arrive on the CPU so the checks read them without a sync; the kernel reads copies.
  const auto g = blend_geometry(tiles, ys, xs, out_h, out_w, weight, overlap_y, overlap_x);
  const c10::cuda::CUDAGuard guard(tiles.device());
  auto out = at::empty({g.B, g.C, g.OH, g.OW}, tiles.options());
  const auto ys_d = ys.to(tiles.device(), /*non_blocking=*/true);
  const auto xs_d = xs.to(tiles.device(), /*non_blocking=*/true);
  const int err = blend_tiles_cuda(to_dtype(tiles, "tiles"), tiles.const_data_ptr(),
                                   ys_d.data_ptr<int64_t>(), xs_d.data_ptr<int64_t>(), g,
                                   out.data_ptr(), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "blend_tiles CUDA launch failed with cudaError ", err);
  return out;
}

at::Tensor separable_filter_cuda_op(const at::Tensor& x, const at::Tensor& wy,
                                    const at::Tensor& wx, int64_t pad, bool adjoint) {
  TORCH_CHECK_VALUE(x.device().is_cuda(), "x: expected a CUDA tensor");
  const auto g = separable_geometry(x, wy, wx, pad, adjoint);
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty({g.B, g.C, g.H, g.W}, x.options());
  auto scratch = at::empty({g.B, g.C, g.H, g.W}, x.options().dtype(wy.scalar_type()));
  const int err = separable_filter_cuda(to_dtype(x, "x"), x.const_data_ptr(), wy.const_data_ptr(),
                                        wx.const_data_ptr(), g, scratch.data_ptr(), out.data_ptr(),
                                        c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "separable_filter CUDA launch failed with cudaError ", err);
  return out;
}

std::tuple<at::Tensor, at::Tensor> apply_mask_cuda_op(const at::Tensor& x, int64_t seed, at::IntArrayRef offsets,
                                                      int64_t threshold, int64_t further_threshold, bool shared) {
  TORCH_CHECK_VALUE(x.device().is_cuda(), "x: expected a CUDA tensor");
  const auto g = mask_geometry(x, seed, offsets, threshold, further_threshold, shared);
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty(x.sizes(), x.options());
  auto further = at::empty({further_threshold >= 0 ? x.numel() : 0}, x.options()).view(
      further_threshold >= 0 ? x.sizes() : at::IntArrayRef({0}));
  const auto offsets_d = at::tensor(std::vector<int64_t>(offsets.begin(), offsets.end()), at::kLong)
                             .to(x.device(), /*non_blocking=*/true);
  const int err = apply_mask_cuda(to_dtype(x, "x"), x.const_data_ptr(), offsets_d.data_ptr<int64_t>(), g,
                                  out.data_ptr(), further_threshold >= 0 ? further.data_ptr() : nullptr,
                                  c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "apply_mask CUDA launch failed with cudaError ", err);
  return {out, further};
}

at::Tensor add_noise_cuda_op(const at::Tensor& x, int64_t seed, at::IntArrayRef offsets, const at::Tensor& sigma) {
  TORCH_CHECK_VALUE(x.device().is_cuda(), "x: expected a CUDA tensor");
  const auto g = noise_geometry(x, seed, offsets, sigma);
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty(x.sizes(), x.options());
  const auto offsets_d = at::tensor(std::vector<int64_t>(offsets.begin(), offsets.end()), at::kLong)
                             .to(x.device(), /*non_blocking=*/true);
  const int err = add_noise_cuda(to_dtype(x, "x"), x.const_data_ptr(), offsets_d.data_ptr<int64_t>(),
                                 sigma.const_data_ptr<double>(), g, out.data_ptr(), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "add_noise CUDA launch failed with cudaError ", err);
  return out;
}

}  // namespace
}  // namespace hk

TORCH_LIBRARY_IMPL(hypir_kernels, CUDA, m) {
  m.impl("_add_noise", &hk::add_noise_cuda_op);
  m.impl("_apply_mask", &hk::apply_mask_cuda_op);
  m.impl("_blend_tiles", &hk::blend_tiles_cuda_op);
  m.impl("_separable_filter", &hk::separable_filter_cuda_op);
}
