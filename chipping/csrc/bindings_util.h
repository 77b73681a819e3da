// Helpers shared by the pybind11 files: the array alias, the thread pool over chunks and the
// structural checks (std::invalid_argument -> ValueError).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace chipping::bind {

namespace py = pybind11;

// Images (or maps) per work chunk of the batch entry points.
constexpr int64_t kChunk = 64;

template <typename T>
using Arr = py::array_t<T, py::array::c_style | py::array::forcecast>;

// Runs fn(chunk, begin, end) over [0, n) in chunks of `chunk` items on up to num_threads
// threads (0 = all hardware threads). Chunk c always covers the same items, so outputs
// gathered per chunk and concatenated in chunk order are deterministic.
template <typename Fn>
void parallel_chunks(int64_t n, int64_t chunk, int num_threads, Fn fn) {
  const int64_t num_chunks = (n + chunk - 1) / chunk;
  int hw = static_cast<int>(std::thread::hardware_concurrency());
  int threads = num_threads > 0 ? num_threads : std::max(1, hw);
  threads = static_cast<int>(std::min<int64_t>(threads, num_chunks));
  std::atomic<int64_t> next{0};
  auto worker = [&]() {
    for (int64_t c = next++; c < num_chunks; c = next++)
      fn(c, c * chunk, std::min(n, (c + 1) * chunk));
  };
  if (threads <= 1) {
    worker();
    return;
  }
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
}

inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

inline void check_splits(const Arr<int64_t>& splits, int64_t n_items, int64_t n_rows,
                         const char* name) {
  require(splits.ndim() == 1 && splits.shape(0) == n_items + 1,
          std::string(name) + " must have one more entry than there are images");
  const int64_t* s = splits.data();
  require(s[0] == 0 && s[n_items] == n_rows,
          std::string(name) + " must start at 0 and end at the number of rows");
  for (int64_t i = 0; i < n_items; ++i)
    require(s[i] <= s[i + 1], std::string(name) + " must be non-decreasing");
}

// Registers plan_positive_batch, plan_positive_image and plan_negative_batch
// (bindings_plan.cpp).
void register_plan(py::module_& m);

}  // namespace chipping::bind
