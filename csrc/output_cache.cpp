// Cache of freed large CPU output buffers (see binding.h). Outputs are plain tensors whose
// storage deleter hands the buffer back here instead of freeing it; the next output of a
// similar size reuses it without page faults. Bounded; thread-safe.
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>
#include <algorithm>
#include <ATen/ops/empty.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/UniqueVoidPtr.h>
#include "binding.h"

namespace hk {
namespace {

constexpr size_t kMinBytes = size_t(1) << 20;  // smaller outputs use the normal allocator
constexpr size_t kAlign = 64;

struct Cache {
  std::mutex mutex;
  std::multimap<size_t, void*> free;  // size -> buffer
  size_t bytes = 0;
};

// Never destroyed: storage deleters may run during interpreter shutdown.
Cache& cache() {
  static Cache* c = new Cache();
  return *c;
}

size_t limit_bytes() {
  const char* env = std::getenv("HYPIR_KERNELS_CPU_CACHE_MB");
  const long mb = env ? std::strtol(env, nullptr, 10) : 1024;
  return mb > 0 ? size_t(mb) << 20 : 0;
}

void give_back(void* ptr, size_t size) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.bytes + size <= limit_bytes()) {
      c.free.emplace(size, ptr);
      c.bytes += size;
      return;
    }
  }
  std::free(ptr);
}

// The smallest cached buffer that fits `*size` bytes and wastes at most 1/8 of itself, or
// nullptr; on success `*size` becomes the buffer's size.
void* take(size_t* size) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.free.lower_bound(*size);
  if (it == c.free.end() || it->first - *size > it->first / 8) return nullptr;
  void* ptr = it->second;
  *size = it->first;
  c.bytes -= it->first;
  c.free.erase(it);
  return ptr;
}

}  // namespace

at::Tensor empty_cpu_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  int64_t numel = 1;
  for (const auto s : sizes) numel *= s;
  const size_t nbytes = size_t(numel) * options.dtype().itemsize();
  if (nbytes < kMinBytes || limit_bytes() == 0) return at::empty(sizes, options);
  size_t size = (nbytes + 4095) & ~size_t(4095);
  void* ptr = take(&size);
  if (ptr == nullptr) ptr = std::aligned_alloc(kAlign, size);
  TORCH_CHECK(ptr != nullptr, "out of memory allocating ", size, " bytes");
  // A resizable storage (unlike from_blob's): resize_ and out= arguments work as on any torch
  // output -- a larger size moves to memory from the CPU allocator and hands this buffer back.
  auto data = c10::InefficientStdFunctionContext::makeDataPtr(
      ptr, [size](void* p) { give_back(p, size); }, at::Device(at::kCPU));
  c10::Storage storage(c10::Storage::use_byte_size_t(), nbytes, std::move(data), c10::GetCPUAllocator(),
                       /*resizable=*/true);
  std::vector<int64_t> strides(sizes.size());
  int64_t stride = 1;
  for (int64_t d = int64_t(sizes.size()) - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= std::max<int64_t>(sizes[d], 1);
  }
  return at::empty({0}, options).set_(std::move(storage), 0, sizes, strides);
}

int64_t cpu_cache_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return int64_t(c.bytes);
}

void empty_cpu_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  for (auto& kv : c.free) std::free(kv.second);
  c.free.clear();
  c.bytes = 0;
}

}  // namespace hk
