#include "partita/torch_bridge/memory_meter.h"

#include <cxxabi.h>
#include <execinfo.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <c10/core/CPUAllocator.h>

#include "partita/core/error.h"

namespace partita {

namespace {

std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};
std::atomic<int64_t> g_allocations{0};
std::atomic<bool> g_installed{false};

// PARTITA_PEAK_ALLOCATIONS (memory_meter.h): every live allocation and a copy of them at the peak.
struct LiveAllocation {
  int64_t bytes = 0;
  int thread = 0;  // numbered in the order threads first allocate
  int frames = 0;
  std::array<void*, 24> stack{};
};
struct PeakTrace {
  std::mutex mutex;
  std::unordered_map<const void*, LiveAllocation> live;
  std::unordered_map<const void*, LiveAllocation> at_peak;
  int64_t peak = 0;
};
std::atomic<PeakTrace*> g_trace{nullptr};
std::atomic<int> g_threads{0};

int thread_number() {
  thread_local const int number = g_threads.fetch_add(1);
  return number;
}

void trace_allocation(PeakTrace& trace, const void* data, int64_t bytes, int64_t now) {
  LiveAllocation a;
  a.bytes = bytes;
  a.thread = thread_number();
  a.frames = backtrace(a.stack.data(), static_cast<int>(a.stack.size()));
  std::lock_guard<std::mutex> lock(trace.mutex);
  trace.live[data] = a;
  if (now > trace.peak) {
    trace.peak = now;
    trace.at_peak = trace.live;
  }
}

// The innermost (up to three) ATen kernels, autograd functions and partita functions that made an
// allocation, innermost first, without their parameter lists; else the innermost ATen or torch function.
// (partita's own functions show only where the binary exports its symbols: the partita command built with
// -DPARTITA_EXPORT_SYMBOLS=ON, which links it with -rdynamic.)
std::string allocated_by(const LiveAllocation& a) {
  std::unique_ptr<char*, decltype(&std::free)> symbols(backtrace_symbols(a.stack.data(), a.frames),
                                                       &std::free);
  std::string out, fallback;
  int shown = 0;
  for (int i = 0; symbols && i < a.frames && shown < 3; ++i) {
    const std::string line = symbols.get()[i];
    const size_t open = line.find('('), plus = line.find('+', open);
    if (open == std::string::npos || plus == std::string::npos || plus == open + 1) continue;
    int status = 0;
    std::unique_ptr<char, decltype(&std::free)> demangled(
        abi::__cxa_demangle(line.substr(open + 1, plus - open - 1).c_str(), nullptr, nullptr, &status),
        &std::free);
    if (status != 0 || !demangled) continue;
    std::string name = demangled.get();
    name = name.substr(0, name.find('('));
    const bool wanted =
        name.rfind("at::native::", 0) == 0 || name.rfind("torch::autograd::generated::", 0) == 0 ||
        (name.rfind("partita::", 0) == 0 && name.find("CountingAllocator") == std::string::npos &&
         name.find("trace_allocation") == std::string::npos);
    if (!wanted) {
      if (fallback.empty() && (name.rfind("at::", 0) == 0 || name.rfind("torch::", 0) == 0)) fallback = name;
      continue;
    }
    out += (shown++ > 0 ? " < " : "") + name;
  }
  if (!out.empty()) return out;
  return fallback.empty() ? "(no ATen, autograd or partita frame)" : fallback;
}

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
  if (PeakTrace* trace = g_trace.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> lock(trace->mutex);
    trace->live.erase(data);
  }
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
    const int64_t now = g_current.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    raise_peak(now);
    if (PeakTrace* trace = g_trace.load(std::memory_order_relaxed))
      trace_allocation(*trace, base + kHeader, bytes, now);
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
    if (std::getenv("PARTITA_PEAK_ALLOCATIONS") != nullptr)
      g_trace = new PeakTrace();  // leaked as the wrapper
    c10::SetCPUAllocator(wrapper, /*priority=*/100);
    g_installed = true;
  });
  return meter;
}

bool MemoryMeter::installed() { return g_installed.load(); }

Bytes MemoryMeter::current_bytes() const { return Bytes(g_current.load()); }
Bytes MemoryMeter::peak_bytes() const { return Bytes(g_peak.load()); }
void MemoryMeter::reset_peak() {
  g_peak.store(g_current.load());
  if (PeakTrace* trace = g_trace.load()) {
    std::lock_guard<std::mutex> lock(trace->mutex);
    trace->peak = g_current.load();
    trace->at_peak = trace->live;
  }
}
int64_t MemoryMeter::allocations() const { return g_allocations.load(); }

bool MemoryMeter::tracing_peak() { return g_trace.load() != nullptr; }

void MemoryMeter::write_peak_allocations(std::FILE* out) const {
  PeakTrace* trace = g_trace.load();
  if (trace == nullptr) return;
  std::unordered_map<const void*, LiveAllocation> at_peak;
  int64_t peak = 0;
  {
    std::lock_guard<std::mutex> lock(trace->mutex);
    at_peak = trace->at_peak;
    peak = trace->peak;
  }
  struct Group {
    int64_t bytes = 0;
    int count = 0;
  };
  std::map<std::pair<int, std::string>, Group> groups;
  for (const auto& [data, a] : at_peak) {
    Group& g = groups[{a.thread, allocated_by(a)}];
    g.bytes += a.bytes;
    ++g.count;
  }
  std::vector<std::pair<std::pair<int, std::string>, Group>> sorted(groups.begin(), groups.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& x, const auto& y) { return x.second.bytes > y.second.bytes; });
  std::fprintf(
      out,
      "CPU tensor storages alive at the highest point since the meter's last reset (%.3f MiB, tensors "
      "allocated before install() not counted), by thread and allocating functions:\n",
      static_cast<double>(peak) / (1 << 20));
  for (const auto& [key, g] : sorted) {
    std::fprintf(out, "  %10.1f KiB  %4d x  thread %d: %s\n", static_cast<double>(g.bytes) / 1024, g.count,
                 key.first, key.second.c_str());
  }
}

}  // namespace partita
