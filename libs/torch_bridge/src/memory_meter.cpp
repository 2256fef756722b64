#include "partita/torch_bridge/memory_meter.h"

#include <atomic>
#include <cstring>
#include <mutex>

#include <c10/core/CPUAllocator.h>

#include "partita/core/error.h"

namespace partita {

namespace {

std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};
std::atomic<int64_t> g_allocations{0};
std::atomic<bool> g_installed{false};

void raise_peak(int64_t now) {
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

// Each block carries a header with its size in front of the data, and data == context, because c10's
// raw_allocate() (used by some kernels) requires a DataPtr whose context is its data pointer. The header is
// kHeader bytes so the data keeps the inner allocator's 64-byte alignment.
constexpr size_t kHeader = 64;
c10::DeleterFnPtr g_inner_deleter = nullptr;

void count_and_free(void* data) {
  char* base = static_cast<char*>(data) - kHeader;
  int64_t bytes = 0;
  std::memcpy(&bytes, base, sizeof bytes);
  g_current.fetch_sub(bytes, std::memory_order_relaxed);
  g_inner_deleter(base);
}

class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* inner) : inner_(inner) {}

  // LibTorch 2.3 made allocate() non-const and added copy_data(); 1.13 has the const allocate() alone. Both
  // allocate()s are declared (without `override`, since one of them overrides nothing), and copy_data() is a
  // plain member where the base has none.
  c10::DataPtr allocate(size_t n) const { return counted(n); }            // NOLINT(modernize-use-override)
  c10::DataPtr allocate(size_t n) { return counted(n); }                  // NOLINT(modernize-use-override)
  void copy_data(void* dest, const void* src, std::size_t count) const {  // NOLINT(modernize-use-override)
    if (count > 0) std::memcpy(dest, src, count);
  }
  c10::DeleterFnPtr raw_deleter() const { return &count_and_free; }  // NOLINT(modernize-use-override)

 private:
  c10::DataPtr counted(size_t n) const {
    c10::DataPtr inner = inner_->allocate(n + kHeader);
    PARTITA_ASSERT(inner.get() == inner.get_context(), "the CPU allocator's blocks are not self-contexted");
    char* base = static_cast<char*>(inner.get_context());  // get() is const void* in LibTorch 2.x
    const c10::Device device = inner.device();
    (void)inner.release_context();  // ownership passes to count_and_free
    const auto bytes = static_cast<int64_t>(n);
    std::memcpy(base, &bytes, sizeof bytes);
    g_allocations.fetch_add(1, std::memory_order_relaxed);
    raise_peak(g_current.fetch_add(bytes, std::memory_order_relaxed) + bytes);
    return c10::DataPtr(base + kHeader, base + kHeader, &count_and_free, device);
  }

  c10::Allocator* inner_;
};

}  // namespace

MemoryMeter& MemoryMeter::install() {
  static MemoryMeter meter;
  static std::once_flag once;
  std::call_once(once, [] {
    // Leaked on purpose: tensors freed at exit still call into it.
    c10::Allocator* inner = c10::GetCPUAllocator();
    g_inner_deleter = inner->raw_deleter();
    PARTITA_ASSERT(g_inner_deleter != nullptr, "the CPU allocator has no raw deleter; cannot wrap it");
    static auto* wrapper = new CountingAllocator(inner);
    // Priority above the default registration (0) so ours wins; a later SetCPUAllocator of lower priority
    // cannot silently replace it.
    c10::SetCPUAllocator(wrapper, /*priority=*/100);
    g_installed = true;
  });
  return meter;
}

bool MemoryMeter::installed() { return g_installed.load(); }

Bytes MemoryMeter::current_bytes() const { return Bytes(g_current.load()); }
Bytes MemoryMeter::peak_bytes() const { return Bytes(g_peak.load()); }
void MemoryMeter::reset_peak() { g_peak.store(g_current.load()); }
int64_t MemoryMeter::allocations() const { return g_allocations.load(); }

}  // namespace partita
