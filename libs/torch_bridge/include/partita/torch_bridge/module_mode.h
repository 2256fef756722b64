#pragma once
// Torch-free, so the planning side can name it.

namespace partita {

// What a scripted module's `self.training` reads, for every submodule (torch.nn's train() and eval()); a
// traced module's graph recorded its mode when it was traced and reads no flag.
enum class ModuleMode { kEval, kTrain };

}  // namespace partita
