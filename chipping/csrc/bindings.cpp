// The pybind11 module (with bindings_plan.cpp and bindings_util.h): batch entry points over
// many images/maps, run on several threads with the GIL released. Argument validation with helpful
// messages is done in chipping/planner.py; here only structural consistency is checked
// (std::invalid_argument -> ValueError), except in plan_positive_image (the single-image fast
// path), which checks the boxes itself with the messages of chipping/_checks.py. The planning entry
// points live in bindings_plan.cpp; this file holds box assignment, FocusChips and the module.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <thread>

#include "bindings_util.h"
#include "focus_chips.h"
#include "sniper_chips.h"
#include "version.h"

namespace py = pybind11;
using namespace chipping;
using namespace chipping::bind;

namespace {

struct AssignChunk {
  std::vector<int64_t> valid_count, ignore_count, valid_index, ignore_index;
  std::vector<float> valid_boxes, ignore_boxes;
};

template <typename T>
Arr<T> concat(const std::vector<AssignChunk>& chunks, std::vector<T> AssignChunk::* member,
              int64_t cols) {
  size_t total = 0;
  for (const auto& c : chunks) total += (c.*member).size();
  const auto rows = static_cast<py::ssize_t>(total / static_cast<size_t>(cols));
  Arr<T> out = cols == 1 ? Arr<T>(rows) : Arr<T>({rows, static_cast<py::ssize_t>(cols)});
  T* dst = out.mutable_data();
  for (const auto& c : chunks) {
    const auto& v = c.*member;
    if (!v.empty()) std::memcpy(dst, v.data(), v.size() * sizeof(T));
    dst += v.size();
  }
  return out;
}

Arr<int64_t> splits_from_counts(const std::vector<AssignChunk>& chunks,
                                std::vector<int64_t> AssignChunk::* member, int64_t n) {
  Arr<int64_t> out(n + 1);
  int64_t* s = out.mutable_data();
  s[0] = 0;
  int64_t k = 0;
  for (const auto& c : chunks)
    for (int64_t v : c.*member) {
      s[k + 1] = s[k] + v;
      ++k;
    }
  return out;
}

py::dict assign_boxes_batch(Arr<int32_t> chip_image_index, Arr<int32_t> chips_scaled,
                            Arr<double> factors, Arr<double> chip_ranges, Arr<float> boxes,
                            Arr<int64_t> box_splits, Arr<uint8_t> crowd, double min_inside,
                            double min_box_size, int num_threads) {
  const int64_t n = chips_scaled.ndim() == 2 ? chips_scaled.shape(0) : -1;
  require(n >= 0 && chips_scaled.shape(1) == 4, "chips must be (N, 4)");
  require(chip_image_index.ndim() == 1 && chip_image_index.shape(0) == n,
          "chip image_index must be (N,)");
  require(factors.ndim() == 1 && factors.shape(0) == n, "factors must be (N,)");
  require(chip_ranges.ndim() == 2 && chip_ranges.shape(0) == n && chip_ranges.shape(1) == 2,
          "chip ranges must be (N, 2)");
  require(boxes.ndim() == 2 && boxes.shape(1) == 4, "boxes must be (B, 4)");
  require(crowd.ndim() == 1 && crowd.shape(0) == boxes.shape(0), "crowd must be (B,)");
  const int64_t num_images = box_splits.shape(0) - 1;
  require(num_images >= 0, "box_splits must not be empty");
  check_splits(box_splits, num_images, boxes.shape(0), "box_splits");
  for (int64_t k = 0; k < n; ++k) {
    const int32_t im = chip_image_index.data()[k];
    require(im >= 0 && im < num_images, "chip image_index out of range of box_splits");
  }
  const AssignParams params{min_inside, min_box_size};
  const int64_t num_chunks = (n + kChunk - 1) / kChunk;
  std::vector<AssignChunk> chunks(num_chunks);
  const float* b = boxes.data();
  const uint8_t* cr = crowd.data();
  const int64_t* sp = box_splits.data();
  const int32_t *ci = chip_image_index.data(), *cs = chips_scaled.data();
  const double *fa = factors.data(), *rg = chip_ranges.data();
  {
    py::gil_scoped_release release;
    parallel_chunks(n, kChunk, num_threads, [&](int64_t c, int64_t begin, int64_t end) {
      AssignChunk& out = chunks[c];
      for (int64_t k = begin; k < end; ++k) {
        const ChipGeometry chip{cs[4 * k], cs[4 * k + 1], cs[4 * k + 2], cs[4 * k + 3],
                                fa[k],     rg[2 * k],     rg[2 * k + 1]};
        const int64_t first = sp[ci[k]], count = sp[ci[k] + 1] - first;
        const size_t nv = out.valid_index.size(), ni = out.ignore_index.size();
        assign_chip(chip, b + 4 * first, cr + first, count, params, out.valid_index,
                    out.valid_boxes, out.ignore_index, out.ignore_boxes);
        out.valid_count.push_back(static_cast<int64_t>(out.valid_index.size() - nv));
        out.ignore_count.push_back(static_cast<int64_t>(out.ignore_index.size() - ni));
      }
    });
  }
  py::dict out;
  out["valid_splits"] = splits_from_counts(chunks, &AssignChunk::valid_count, n);
  out["valid_index"] = concat(chunks, &AssignChunk::valid_index, 1);
  out["valid_boxes"] = concat(chunks, &AssignChunk::valid_boxes, 4);
  out["ignore_splits"] = splits_from_counts(chunks, &AssignChunk::ignore_count, n);
  out["ignore_index"] = concat(chunks, &AssignChunk::ignore_index, 1);
  out["ignore_boxes"] = concat(chunks, &AssignChunk::ignore_boxes, 4);
  return out;
}

py::dict focus_chips_batch(Arr<float> maps, Arr<int64_t> map_shapes, Arr<int64_t> map_offsets,
                           double threshold, int64_t dilation, int64_t min_size, int num_threads) {
  require(map_shapes.ndim() == 2 && map_shapes.shape(1) == 2, "map_shapes must be (M, 2)");
  const int64_t n = map_shapes.shape(0);
  check_splits(map_offsets, n, maps.size(), "map_offsets");
  for (int64_t i = 0; i < n; ++i)
    require(map_offsets.data()[i + 1] - map_offsets.data()[i] ==
                map_shapes.data()[2 * i] * map_shapes.data()[2 * i + 1],
            "map_offsets must match map_shapes");
  std::vector<std::vector<CellRect>> per_map(static_cast<size_t>(n));
  const float* m = maps.data();
  const int64_t *sh = map_shapes.data(), *of = map_offsets.data();
  {
    py::gil_scoped_release release;
    parallel_chunks(n, 1, num_threads, [&](int64_t c, int64_t, int64_t) {
      focus_chips_map(m + of[c], sh[2 * c], sh[2 * c + 1], threshold, dilation, min_size,
                      per_map[c]);
    });
  }
  size_t total = 0;
  for (const auto& v : per_map) total += v.size();
  Arr<int32_t> rects({static_cast<py::ssize_t>(total), py::ssize_t(4)});
  Arr<int32_t> map_index(static_cast<py::ssize_t>(total));
  int32_t *r = rects.mutable_data(), *mi = map_index.mutable_data();
  size_t k = 0;
  for (int64_t i = 0; i < n; ++i)
    for (const CellRect& c : per_map[i]) {
      r[4 * k] = c.x1;
      r[4 * k + 1] = c.y1;
      r[4 * k + 2] = c.x2;
      r[4 * k + 3] = c.y2;
      mi[k++] = static_cast<int32_t>(i);
    }
  py::dict out;
  out["rects"] = rects;
  out["map_index"] = map_index;
  return out;
}

}  // namespace

PYBIND11_MODULE(_planner, m) {
  m.doc() = "Compiled SNIPER/AutoFocus chip planner (use chipping.planner, not this module).";
  m.attr("ABI_VERSION") = kAbiVersion;
  register_plan(m);
  m.def("assign_boxes_batch", &assign_boxes_batch, py::arg("chip_image_index"),
        py::arg("chips_scaled"), py::arg("factors"), py::arg("chip_ranges"), py::arg("boxes"),
        py::arg("box_splits"), py::arg("crowd"), py::arg("min_inside"), py::arg("min_box_size"),
        py::arg("num_threads"));
  m.def("focus_chips_batch", &focus_chips_batch, py::arg("maps"), py::arg("map_shapes"),
        py::arg("map_offsets"), py::arg("threshold"), py::arg("dilation"), py::arg("min_size"),
        py::arg("num_threads"));
}
