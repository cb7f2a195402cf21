// Thread helpers shared by the C++ kernels (hashgrid_cpu.cpp, mlp_cpu.cpp).
//
// Built with -fopenmp, the work runs on PyTorch's own OpenMP pool (the library links
// libgomp.so.1, and the loader hands it the copy torch already loaded). Our own
// std::threads competed with that pool's workers, which spin for a while after every torch
// op: measured on 2 cores, encode (2^13 points, L=16) 1.2 ms alone and a 64x64x8192 mm 0.5 ms
// alone, but the pair alternating took 3.0 ms with 2 std::threads and also with 1.
// Without OpenMP, std::thread as before.
#pragma once

#include <cstdint>
#include <thread>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace nv {

template <typename Body>
void for_each_thread(int n_threads, Body body) {
#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads)
  body(omp_get_thread_num(), omp_get_num_threads());
#else
  std::vector<std::thread> pool;
  for (int t = 1; t < n_threads; ++t) pool.emplace_back(body, t, n_threads);
  body(0, n_threads);
  for (auto& th : pool) th.join();
#endif
}

// [0, n) cut into one contiguous range per thread (each writes only its own outputs), so
// every thread count gives the same bits.
template <typename Body>
void parallel_ranges(int64_t n, int n_threads, Body body) {
  int64_t threads = n_threads < 1 ? 1 : n_threads;
  if (threads > n) threads = n;
  if (threads <= 1) {
    body(0, n);
    return;
  }
  for_each_thread(static_cast<int>(threads), [&](int t, int nt) { body(n * t / nt, n * (t + 1) / nt); });
}

}  // namespace nv
