#pragma once
// OpenBLAS keeps its own thread pool, independent of LibTorch's intra-op threads (see shared NOTES: with
// libopenblas0-pthread a matmul at torch threads=1 already uses every core, and two concurrent CPU workers
// then oversubscribe the machine). The engine sets it explicitly; found at run time with dlsym, so nothing
// breaks where another BLAS is in use.
namespace partita {

// OpenBLAS's thread count, or -1 when the process does not use OpenBLAS.
int blas_threads();
// Returns false when the process does not use OpenBLAS.
bool set_blas_threads(int threads);

}  // namespace partita
