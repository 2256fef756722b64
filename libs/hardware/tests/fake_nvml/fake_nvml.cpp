// A stand-in for libnvidia-ml.so.1 with two fixed GPUs, so the dlopen path of partita::Nvml is tested on
// machines without an NVIDIA driver. Figures: see nvml_test.cpp.
#include <cstring>

extern "C" {

struct FakeMemory {
  unsigned long long total, free, used;
};

static int g_devices[2];

int nvmlInit_v2() { return 0; }
int nvmlShutdown() { return 0; }
const char* nvmlErrorString(int) { return "fake NVML error"; }
int nvmlDeviceGetCount_v2(unsigned* count) {
  *count = 2;
  return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned index, void** device) {
  if (index >= 2) return 2;  // NVML_ERROR_INVALID_ARGUMENT
  *device = &g_devices[index];
  return 0;
}
int nvmlDeviceGetName(void* device, char* name, unsigned length) {
  const char* n = device == &g_devices[0] ? "Fake GPU 0" : "Fake GPU 1";
  std::strncpy(name, n, length);
  return 0;
}
int nvmlDeviceGetMemoryInfo(void*, FakeMemory* memory) {
  memory->total = 80ULL << 30;
  memory->free = 70ULL << 30;
  memory->used = 10ULL << 30;
  return 0;
}
int nvmlDeviceGetEnforcedPowerLimit(void*, unsigned* milliwatts) {
  *milliwatts = 700000;
  return 0;
}
int nvmlDeviceGetPowerUsage(void* device, unsigned* milliwatts) {
  *milliwatts = device == &g_devices[0] ? 123456 : 99000;
  return 0;
}
// GPU 1 pretends to be pre-Volta: no energy counter.
int nvmlDeviceGetTotalEnergyConsumption(void* device, unsigned long long* millijoules) {
  if (device != &g_devices[0]) return 3;  // NVML_ERROR_NOT_SUPPORTED
  *millijoules = 5000000;
  return 0;
}
}
