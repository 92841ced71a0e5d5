// Op schemas (namespace hypir_kernels) and the CPU registrations. The public Python ops in
// hypir_kernels/ops.py choose a backend and call these kernel ops.
#include <Python.h>
#include "binding.h"
#include <ATen/ops/zeros.h>

#ifndef HK_CUDA_ARCHS
#define HK_CUDA_ARCHS ""
#endif

namespace hk {
namespace {

template <decltype(&blend_tiles_cpu) Launch>
at::Tensor blend_tiles_cpu_op(const at::Tensor& tiles, const at::Tensor& ys, const at::Tensor& xs,
                              int64_t out_h, int64_t out_w, int64_t weight, int64_t overlap_y,
                              int64_t overlap_x) {
  TORCH_CHECK_VALUE(tiles.device().is_cpu(), "tiles: expected a CPU tensor");
  const auto g = blend_geometry(tiles, ys, xs, out_h, out_w, weight, overlap_y, overlap_x);
  auto out = empty_cpu_output({g.B, g.C, g.OH, g.OW}, tiles.options());
  Launch(to_dtype(tiles, "tiles"), tiles.const_data_ptr(), ys.data_ptr<int64_t>(),
         xs.data_ptr<int64_t>(), g, out.data_ptr());
  return out;
}

at::Tensor separable_filter_cpu_op(const at::Tensor& x, const at::Tensor& wy, const at::Tensor& wx,
                                   int64_t pad, bool adjoint) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), "x: expected a CPU tensor");
  const auto g = separable_geometry(x, wy, wx, pad, adjoint);
  auto out = empty_cpu_output({g.B, g.C, g.H, g.W}, x.options());
  if (x.numel() == 0) return out;  // the row loops index a padded row of W + k - 1 >= 1 entries
  separable_filter_cpu(to_dtype(x, "x"), x.const_data_ptr(), wy.const_data_ptr(),
                       wx.const_data_ptr(), g, out.data_ptr());
  return out;
}

template <decltype(&apply_mask_cpu) Launch>
std::tuple<at::Tensor, at::Tensor> apply_mask_cpu_op(const at::Tensor& x, int64_t seed, at::IntArrayRef offsets,
                                                     int64_t threshold, int64_t further_threshold, bool shared) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), "x: expected a CPU tensor");
  const auto g = mask_geometry(x, seed, offsets, threshold, further_threshold, shared);
  auto out = empty_cpu_output(x.sizes(), x.options());
  auto further = further_threshold >= 0 ? empty_cpu_output(x.sizes(), x.options()) : at::empty({0}, x.options());
  Launch(to_dtype(x, "x"), x.const_data_ptr(), offsets.data(), g, out.data_ptr(),
                 further_threshold >= 0 ? further.data_ptr() : nullptr);
  return {out, further};
}

at::Tensor add_noise_cpu_op(const at::Tensor& x, int64_t seed, at::IntArrayRef offsets, const at::Tensor& sigma) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), "x: expected a CPU tensor");
  const auto g = noise_geometry(x, seed, offsets, sigma);
  auto out = empty_cpu_output(x.sizes(), x.options());
  add_noise_cpu(to_dtype(x, "x"), x.const_data_ptr(), offsets.data(), sigma.const_data_ptr<double>(), g, out.data_ptr());
  return out;
}

at::Tensor filter2d_fft_cpu_op(const at::Tensor& x, const at::Tensor& taps, int64_t n, int64_t pad, bool adjoint) {
  const bool fp64 = x.scalar_type() == at::kDouble;
  TORCH_CHECK_VALUE(x.device().is_cpu() && x.dim() == 4 && (fp64 || x.scalar_type() == at::kFloat) && x.is_contiguous(),
                    "x: expected a contiguous float32/float64 CPU tensor [B, C, H, W], got ", x.scalar_type(), " with ",
                    x.dim(), " dims");
  TORCH_CHECK_VALUE(taps.device().is_cpu() && taps.dim() == 3 &&
                        taps.scalar_type() == (fp64 ? at::kComplexDouble : at::kComplexFloat) &&
                        taps.is_contiguous() && !taps.is_conj() && taps.size(0) == x.size(0) &&
                        taps.size(1) % 2 == 1 && taps.size(2) == n / 2 + 1,
                    "taps: expected a contiguous complex tensor [B, k, n / 2 + 1] (odd k) matching x's precision, got ",
                    taps.scalar_type(), " ", taps.sizes());
  int64_t m = n;
  for (int64_t p : {2, 3})
    while (m > 1 && m % p == 0) m /= p;
  TORCH_CHECK_VALUE(m == 1 && n >= x.size(2) + taps.size(1) - 1, "n: expected 2^a 3^b >= H + k - 1, got ", n);
  TORCH_CHECK_VALUE(pad >= 0 && pad <= 3, "pad: unknown padding code ", pad);
  auto out = empty_cpu_output(x.sizes(), x.options());
  if (x.numel() == 0) return out;  // the row transforms divide by W and C
  const Filter2dGeometry g{x.size(0), x.size(1), x.size(2), x.size(3), taps.size(1), n, static_cast<int>(pad), adjoint};
  filter2d_fft_cpu(fp64, x.const_data_ptr(), taps.const_data_ptr(), g, out.data_ptr());
  return out;
}


// ---- GroupNorm (+ SiLU) -------------------------------------------------------------------

// Dims that put the channels last: (0, 2, ..., d - 1, 1).
std::vector<int64_t> channels_last_order(int64_t dims) {
  std::vector<int64_t> order{0};
  for (int64_t d = 2; d < dims; ++d) order.push_back(d);
  order.push_back(1);
  return order;
}

// The kernels read x as NCHW-contiguous or channels-last ([N, *spatial, C] contiguous in that
// order, any dims >= 3); anything else is copied to NCHW first.
bool group_norm_layout(const at::Tensor& x) {
  if (x.is_contiguous()) return false;
  return x.dim() >= 3 && x.permute(channels_last_order(x.dim())).is_contiguous();
}

std::vector<int64_t> inverse_order(const std::vector<int64_t>& order) {
  std::vector<int64_t> inverse(order.size());
  for (size_t i = 0; i < order.size(); ++i) inverse[size_t(order[i])] = int64_t(i);
  return inverse;
}

// t (x's shape) in the layout the kernels read for x.
at::Tensor in_layout(const at::Tensor& t, bool channels_last) {
  if (!channels_last) return t.contiguous();
  const auto order = channels_last_order(t.dim());
  return t.permute(order).contiguous().permute(inverse_order(order));
}

at::Tensor empty_in_layout(const at::Tensor& x, bool channels_last) {
  if (!channels_last) return empty_cpu_output(x.sizes(), x.options());
  const auto order = channels_last_order(x.dim());
  std::vector<int64_t> sizes;
  for (const auto d : order) sizes.push_back(x.size(d));
  return empty_cpu_output(sizes, x.options()).permute(inverse_order(order));
}

GroupNormGeometry group_norm_geometry(const at::Tensor& x, int64_t groups, double eps, bool channels_last, bool silu) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), "x: expected a CPU tensor");
  TORCH_CHECK_VALUE(x.dim() >= 2, "x: expected [N, C, *], got ", x.dim(), " dims");
  TORCH_CHECK_VALUE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf,
                    "x: expected float32, bfloat16 or float16, got ", x.scalar_type());
  TORCH_CHECK_VALUE(groups >= 1 && x.size(1) % groups == 0, "groups: expected a divisor of the ", x.size(1),
                    " channels, got ", groups);
  TORCH_CHECK_VALUE(eps >= 0, "eps: expected >= 0, got ", eps);
  const int64_t N = x.size(0), C = x.size(1);
  return GroupNormGeometry{N, C, N * C == 0 ? 0 : x.numel() / (N * C), groups, eps, channels_last, silu};
}

// weight/bias as C fp32 values (an empty tensor for None).
at::Tensor affine_fp32(const c10::optional<at::Tensor>& t, int64_t C, const char* name) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == C && t->device().is_cpu() && t->is_floating_point(), name,
                    ": expected a floating CPU tensor [", C, "], got ", t->sizes());
  return t->to(at::kFloat).contiguous();
}

const float* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr<float>() : nullptr; }

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_norm_silu_cpu_op(const at::Tensor& x_in,
                                                                     const c10::optional<at::Tensor>& weight,
                                                                     const c10::optional<at::Tensor>& bias,
                                                                     int64_t groups, double eps, bool silu) {
  const bool cl = group_norm_layout(x_in);
  const auto g = group_norm_geometry(x_in, groups, eps, cl, silu);
  const at::Tensor x = cl ? x_in : x_in.contiguous();
  const auto w = affine_fp32(weight, g.C, "weight"), b = affine_fp32(bias, g.C, "bias");
  auto y = empty_in_layout(x, cl);
  auto mean = at::empty({g.N, g.G}, x.options().dtype(at::kFloat));
  auto rstd = at::empty({g.N, g.G}, x.options().dtype(at::kFloat));
  if (x.numel() == 0) return {y, mean.zero_(), rstd.zero_()};
  group_norm_silu_cpu(to_dtype(x, "x"), x.const_data_ptr(), ptr_or_null(w), ptr_or_null(b), g, y.data_ptr(),
                      mean.data_ptr<float>(), rstd.data_ptr<float>());
  return {y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> group_norm_silu_backward_cpu_op(
    const at::Tensor& grad_in, const at::Tensor& x_in, const c10::optional<at::Tensor>& weight,
    const c10::optional<at::Tensor>& bias, const at::Tensor& mean, const at::Tensor& rstd, int64_t groups, double eps, bool silu) {
  (void)eps;  // the saved statistics already carry it; in the schema for the reference backend
  const bool cl = group_norm_layout(x_in);
  const auto g = group_norm_geometry(x_in, groups, 0.0, cl, silu);
  TORCH_CHECK_VALUE(grad_in.sizes() == x_in.sizes() && grad_in.scalar_type() == x_in.scalar_type() &&
                        grad_in.device().is_cpu(),
                    "grad: expected x's shape ", x_in.sizes(), " and dtype ", x_in.scalar_type(), ", got ",
                    grad_in.sizes(), " ", grad_in.scalar_type());
  for (const auto* t : {&mean, &rstd})
    TORCH_CHECK_VALUE(t->scalar_type() == at::kFloat && t->is_contiguous() && t->numel() == g.N * g.G &&
                          t->device().is_cpu(),
                      t == &mean ? "mean" : "rstd", ": expected contiguous float32 [N, G] = [", g.N, ", ", g.G, "]");
  const at::Tensor x = cl ? x_in : x_in.contiguous();
  const at::Tensor grad = in_layout(grad_in, cl);
  const auto w = affine_fp32(weight, g.C, "weight"), b = affine_fp32(bias, g.C, "bias");
  auto dx = empty_in_layout(x, cl);
  auto dw = at::zeros({g.C}, x.options().dtype(at::kFloat));
  auto db = at::zeros({g.C}, x.options().dtype(at::kFloat));
  if (x.numel() > 0)
    group_norm_silu_backward_cpu(to_dtype(x, "x"), grad.const_data_ptr(), x.const_data_ptr(), ptr_or_null(w),
                                 ptr_or_null(b), mean.const_data_ptr<float>(), rstd.const_data_ptr<float>(), g,
                                 dx.data_ptr(), dw.data_ptr<float>(), db.data_ptr<float>());
  // No weight (bias): an empty gradient in its place, as the schema has no optional returns.
  return {dx, w.defined() ? dw.to(weight->scalar_type()) : dw.new_empty({0}),
          b.defined() ? db.to(bias->scalar_type()) : db.new_empty({0})};
}

// An uninitialised CPU tensor like x from the output cache (see binding.h): for ops composed in
// Python whose large outputs would otherwise fault in fresh pages on every call.
at::Tensor empty_like_cached_op(const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.device().is_cpu(), "x: expected a CPU tensor");
  return empty_cpu_output(x.sizes(), x.options());
}

}  // namespace
}  // namespace hk

TORCH_LIBRARY(hypir_kernels, m) {
  m.def("_empty_like_cached(Tensor x) -> Tensor");
  // x + sigma[b] * Philox Gaussian noise (see noise.h).
  m.def("_add_noise(Tensor x, int seed, int[] offsets, Tensor sigma) -> Tensor");
  // x [B, C, H, W] times a Philox Bernoulli mask (and a further, subset mask); see mask.h.
  m.def(
      "_apply_mask(Tensor x, int seed, int[] offsets, int threshold, int further_threshold, bool shared) "
      "-> (Tensor, Tensor)");
  // Test hook: the CUDA kernel's per-group code (mask::apply_group) executed on the CPU.
  m.def(
      "_apply_mask_groupwise(Tensor x, int seed, int[] offsets, int threshold, int further_threshold, bool shared) "
      "-> (Tensor, Tensor)");
  // x [B, C, H, W] filtered along W with wx [B, kx], then along H with wy [B, ky]; or the adjoint.
  // filter2d (or its adjoint) on the CPU: transforms along H, mixing along W (see launch.h).
  m.def("_filter2d_fft(Tensor x, Tensor taps, int n, int pad, bool adjoint) -> Tensor");
  // GroupNorm over x [N, C, *] with G groups, optional affine, optional fused SiLU; returns
  // (y, mean [N, G], rstd [N, G]) with fp32 statistics; and its backward (dx, dweight, dbias), the last two
  // empty when weight/bias are None.
  m.def("_group_norm_silu(Tensor x, Tensor? weight, Tensor? bias, int groups, float eps, bool silu) -> (Tensor, Tensor, Tensor)");
  m.def(
      "_group_norm_silu_backward(Tensor grad, Tensor x, Tensor? weight, Tensor? bias, Tensor mean, Tensor rstd, "
      "int groups, float eps, bool silu) -> (Tensor, Tensor, Tensor)");
  m.def("_separable_filter(Tensor x, Tensor wy, Tensor wx, int pad, bool adjoint) -> Tensor");
  m.def(
      "_blend_tiles(Tensor tiles, Tensor ys, Tensor xs, int out_h, int out_w, int weight, "
      "int overlap_y, int overlap_x) -> Tensor");
  // Test hook: the CUDA kernel's per-pixel code (blend_pixel) executed on the CPU.
  m.def(
      "_blend_tiles_pixelwise(Tensor tiles, Tensor ys, Tensor xs, int out_h, int out_w, "
      "int weight, int overlap_y, int overlap_x) -> Tensor");
}

TORCH_LIBRARY_IMPL(hypir_kernels, CPU, m) {
  m.impl("_blend_tiles", &hk::blend_tiles_cpu_op<&hk::blend_tiles_cpu>);
  m.impl("_blend_tiles_pixelwise", &hk::blend_tiles_cpu_op<&hk::blend_tiles_cpu_pixelwise>);
  m.impl("_separable_filter", &hk::separable_filter_cpu_op);
  m.impl("_apply_mask", &hk::apply_mask_cpu_op<&hk::apply_mask_cpu>);
  m.impl("_apply_mask_groupwise", &hk::apply_mask_cpu_op<&hk::apply_mask_cpu_groupwise>);
  m.impl("_add_noise", &hk::add_noise_cpu_op);
  m.impl("_filter2d_fft", &hk::filter2d_fft_cpu_op);
  m.impl("_empty_like_cached", &hk::empty_like_cached_op);
  m.impl("_group_norm_silu", &hk::group_norm_silu_cpu_op);
  m.impl("_group_norm_silu_backward", &hk::group_norm_silu_backward_cpu_op);
}

// A Python module, so that `import hypir_kernels._C` loads the registrations above.
static PyObject* build_info(PyObject*, PyObject*) {
#ifdef HK_WITH_CUDA
  const int cuda = 1;
#else
  const int cuda = 0;
#endif
  return Py_BuildValue("{s:O,s:s}", "cuda", cuda ? Py_True : Py_False, "cuda_archs", HK_CUDA_ARCHS);
}

static PyObject* cpu_cache_bytes(PyObject*, PyObject*) {
  return PyLong_FromLongLong(hk::cpu_cache_bytes());
}

static PyObject* empty_cpu_cache(PyObject*, PyObject*) {
  hk::empty_cpu_cache();
  Py_RETURN_NONE;
}

static PyMethodDef kMethods[] = {
    {"build_info", build_info, METH_NOARGS, "Which parts of the extension were compiled."},
    {"cpu_cache_bytes", cpu_cache_bytes, METH_NOARGS, "Bytes held by the CPU output cache."},
    {"empty_cpu_cache", empty_cpu_cache, METH_NOARGS, "Free the CPU output cache."},
    {nullptr, nullptr, 0, nullptr}};

static struct PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, kMethods};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&kModule); }
