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
static unsigned g_limit_mw[2] = {700000, 700000};
int nvmlDeviceGetEnforcedPowerLimit(void* device, unsigned* milliwatts) {
  *milliwatts = g_limit_mw[device == &g_devices[0] ? 0 : 1];
  return 0;
}
int nvmlDeviceGetPowerManagementLimitConstraints(void*, unsigned* low, unsigned* high) {
  *low = 200000;
  *high = 700000;
  return 0;
}
// GPU 1 refuses, as a GPU does to a user who is not root.
int nvmlDeviceSetPowerManagementLimit(void* device, unsigned milliwatts) {
  if (device != &g_devices[0]) return 4;                     // NVML_ERROR_NO_PERMISSION
  if (milliwatts < 200000 || milliwatts > 700000) return 2;  // NVML_ERROR_INVALID_ARGUMENT
  g_limit_mw[0] = milliwatts;
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
