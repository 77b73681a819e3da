// The only pybind11 file: batch entry points over many images/maps, run on several threads
// with the GIL released. Argument validation with helpful messages is done in
// chipping/planner.py; here only structural consistency is checked (std::invalid_argument ->
// ValueError), except in plan_positive_image (the single-image fast path), which checks the
// boxes itself with the messages of chipping/_checks.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <thread>

#include "focus_chips.h"
#include "sniper_chips.h"
#include "version.h"

namespace py = pybind11;
using namespace chipping;

namespace {

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

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

void check_splits(const Arr<int64_t>& splits, int64_t n_items, int64_t n_rows, const char* name) {
  require(splits.ndim() == 1 && splits.shape(0) == n_items + 1,
          std::string(name) + " must have one more entry than there are images");
  const int64_t* s = splits.data();
  require(s[0] == 0 && s[n_items] == n_rows,
          std::string(name) + " must start at 0 and end at the number of rows");
  for (int64_t i = 0; i < n_items; ++i)
    require(s[i] <= s[i + 1], std::string(name) + " must be non-decreasing");
}

PlanParams make_params(const Arr<double>& scales, const Arr<double>& ranges, int64_t chip_size,
                       int64_t stride, bool jitter) {
  require(scales.ndim() == 2 && scales.shape(1) == 3, "scales must be (S, 3)");
  require(ranges.ndim() == 2 && ranges.shape(1) == 2 && ranges.shape(0) == scales.shape(0),
          "ranges must be (S, 2) with one row per scale");
  require(chip_size > 0 && stride > 0, "chip_size and stride must be positive");
  PlanParams p;
  for (int64_t s = 0; s < scales.shape(0); ++s) {
    p.scales.push_back(Scale{scales.at(s, 0) != 0.0, scales.at(s, 1), scales.at(s, 2)});
    p.range_lo.push_back(ranges.at(s, 0));
    p.range_hi.push_back(ranges.at(s, 1));
  }
  p.chip_size = chip_size;
  p.stride = stride;
  p.jitter = jitter;
  return p;
}

py::dict chips_to_dict(const std::vector<std::vector<PlannedChip>>& per_chunk,
                       const std::vector<std::vector<int32_t>>& chunk_images) {
  size_t total = 0;
  for (const auto& v : per_chunk) total += v.size();
  const auto n = static_cast<py::ssize_t>(total);
  Arr<int32_t> image_index(n), scale_index(n), counts(n), chips({n, py::ssize_t(4)});
  Arr<double> factors(n);
  int32_t *ii = image_index.mutable_data(), *si = scale_index.mutable_data();
  int32_t *cn = counts.mutable_data(), *ch = chips.mutable_data();
  double* fa = factors.mutable_data();
  size_t k = 0;
  for (size_t c = 0; c < per_chunk.size(); ++c)
    for (size_t j = 0; j < per_chunk[c].size(); ++j, ++k) {
      const PlannedChip& p = per_chunk[c][j];
      ii[k] = chunk_images[c][j];
      si[k] = p.scale_index;
      cn[k] = p.count;
      fa[k] = p.factor;
      ch[4 * k] = p.x1;
      ch[4 * k + 1] = p.y1;
      ch[4 * k + 2] = p.x2;
      ch[4 * k + 3] = p.y2;
    }
  py::dict out;
  out["image_index"] = image_index;
  out["scale_index"] = scale_index;
  out["chips_scaled"] = chips;
  out["factors"] = factors;
  out["counts"] = counts;
  return out;
}

constexpr int64_t kChunk = 64;

py::dict plan_positive_batch(Arr<float> boxes, Arr<int64_t> box_splits, Arr<int64_t> image_sizes,
                             Arr<double> scales, Arr<double> ranges, int64_t chip_size,
                             int64_t stride, bool jitter, Arr<uint64_t> seeds, int num_threads) {
  const int64_t n = image_sizes.shape(0);
  require(boxes.ndim() == 2 && boxes.shape(1) == 4, "boxes must be (B, 4)");
  require(image_sizes.ndim() == 2 && image_sizes.shape(1) == 2, "image_sizes must be (N, 2)");
  require(seeds.ndim() == 1 && seeds.shape(0) == n, "seeds must be (N,)");
  check_splits(box_splits, n, boxes.shape(0), "box_splits");
  const PlanParams params = make_params(scales, ranges, chip_size, stride, jitter);
  const int64_t num_chunks = (n + kChunk - 1) / kChunk;
  std::vector<std::vector<PlannedChip>> per_chunk(num_chunks);
  std::vector<std::vector<int32_t>> chunk_images(num_chunks);
  const float* b = boxes.data();
  const int64_t *sp = box_splits.data(), *sz = image_sizes.data();
  const uint64_t* sd = seeds.data();
  {
    py::gil_scoped_release release;
    parallel_chunks(n, kChunk, num_threads, [&](int64_t c, int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        plan_positive_image(b + 4 * sp[i], sp[i + 1] - sp[i], sz[2 * i], sz[2 * i + 1], params,
                            sd[i], per_chunk[c]);
        chunk_images[c].resize(per_chunk[c].size(), static_cast<int32_t>(i));
      }
    });
  }
  return chips_to_dict(per_chunk, chunk_images);
}

// "name[i] = [x1, y1, x2, y2]" with the values as Python prints float32 values (repr).
std::string box_text(const char* name, int64_t i, const float* b) {
  std::ostringstream os;
  os.precision(17);
  os << name << "[" << i << "] = [";
  for (int k = 0; k < 4; ++k) {
    const double v = b[k];
    if (std::isnan(v))
      os << "nan";
    else if (std::isinf(v))
      os << (v > 0 ? "inf" : "-inf");
    else
      os << v;
    os << (k < 3 ? ", " : "]");
  }
  return os.str();
}

// The checks of chipping._checks.as_boxes + check_inside for the boxes of one image, in one
// pass: finite, x2 >= x1 and y2 >= y1, inside [0, width] x [0, height].
void check_image_boxes(const float* b, int64_t n, int64_t height, int64_t width, const char* name) {
  for (int64_t i = 0; i < n; ++i) {
    const float* r = b + 4 * i;
    if (!(std::isfinite(r[0]) && std::isfinite(r[1]) && std::isfinite(r[2]) && std::isfinite(r[3])))
      throw std::invalid_argument(box_text(name, i, r) + " is not finite (NaN or inf)");
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* r = b + 4 * i;
    if (r[2] < r[0] || r[3] < r[1])
      throw std::invalid_argument(box_text(name, i, r) +
                                  " has negative width or height (need x2 >= x1 and y2 >= y1)");
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* r = b + 4 * i;
    if (r[0] < 0 || r[1] < 0 || r[2] > static_cast<double>(width) ||
        r[3] > static_cast<double>(height)) {
      std::ostringstream os;
      os << box_text(name, i, r) << " lies outside the image (height " << height << ", width "
         << width << "); clip boxes to [0, width] x [0, height] first";
      throw std::invalid_argument(os.str());
    }
  }
}

// Positive chips of one image in one call (the single-image API's fast path): checks the boxes
// as the Python side does for a batch, then plans. Returns (scale_index, chips_scaled, factors,
// counts).
py::tuple plan_positive_image_checked(Arr<float> boxes, int64_t height, int64_t width,
                                      Arr<double> scales, Arr<double> ranges, int64_t chip_size,
                                      int64_t stride, bool jitter, uint64_t seed) {
  require(boxes.ndim() == 2 && boxes.shape(1) == 4, "boxes must be (N, 4)");
  require(height > 0 && width > 0, "height and width must be positive");
  const int64_t n = boxes.shape(0);
  check_image_boxes(boxes.data(), n, height, width, "boxes");
  const PlanParams params = make_params(scales, ranges, chip_size, stride, jitter);
  std::vector<PlannedChip> out;
  {
    py::gil_scoped_release release;
    plan_positive_image(boxes.data(), n, height, width, params, seed, out);
  }
  const auto k = static_cast<py::ssize_t>(out.size());
  Arr<int32_t> scale_index(k), counts(k), chips({k, py::ssize_t(4)});
  Arr<double> factors(k);
  int32_t *si = scale_index.mutable_data(), *cn = counts.mutable_data();
  int32_t* ch = chips.mutable_data();
  double* fa = factors.mutable_data();
  for (py::ssize_t j = 0; j < k; ++j) {
    const PlannedChip& p = out[static_cast<size_t>(j)];
    si[j] = p.scale_index;
    cn[j] = p.count;
    fa[j] = p.factor;
    ch[4 * j] = p.x1;
    ch[4 * j + 1] = p.y1;
    ch[4 * j + 2] = p.x2;
    ch[4 * j + 3] = p.y2;
  }
  return py::make_tuple(scale_index, chips, factors, counts);
}

py::dict plan_negative_batch(Arr<float> proposals, Arr<int64_t> proposal_splits,
                             Arr<int32_t> positive_scale_index, Arr<int32_t> positive_chips,
                             Arr<int64_t> positive_splits, Arr<int64_t> image_sizes,
                             Arr<double> scales, Arr<double> ranges, Arr<int64_t> min_proposals,
                             int64_t chip_size, int64_t stride, bool jitter, Arr<uint64_t> seeds,
                             int num_threads) {
  const int64_t n = image_sizes.shape(0);
  require(proposals.ndim() == 2 && proposals.shape(1) == 4, "proposals must be (P, 4)");
  require(positive_chips.ndim() == 2 && positive_chips.shape(1) == 4,
          "positive chips must be (Q, 4)");
  require(
      positive_scale_index.ndim() == 1 && positive_scale_index.shape(0) == positive_chips.shape(0),
      "positive scale_index must be (Q,)");
  require(seeds.ndim() == 1 && seeds.shape(0) == n, "seeds must be (N,)");
  check_splits(proposal_splits, n, proposals.shape(0), "proposal_splits");
  check_splits(positive_splits, n, positive_chips.shape(0), "positive_splits");
  const PlanParams params = make_params(scales, ranges, chip_size, stride, jitter);
  require(min_proposals.ndim() == 1 && min_proposals.shape(0) == scales.shape(0),
          "min_proposals must have one entry per scale");
  const std::vector<int64_t> min_props(min_proposals.data(),
                                       min_proposals.data() + min_proposals.shape(0));
  // Positive chips as PlannedChip records (factor unused for the containment test).
  std::vector<PlannedChip> positives(static_cast<size_t>(positive_chips.shape(0)));
  for (size_t k = 0; k < positives.size(); ++k) {
    const int32_t* q = positive_chips.data() + 4 * k;
    positives[k] = PlannedChip{positive_scale_index.data()[k], 0.0, q[0], q[1], q[2], q[3], 0};
  }
  const int64_t num_chunks = (n + kChunk - 1) / kChunk;
  std::vector<std::vector<PlannedChip>> per_chunk(num_chunks);
  std::vector<std::vector<int32_t>> chunk_images(num_chunks);
  const float* p = proposals.data();
  const int64_t *sp = proposal_splits.data(), *qs = positive_splits.data();
  const int64_t* sz = image_sizes.data();
  const uint64_t* sd = seeds.data();
  {
    py::gil_scoped_release release;
    parallel_chunks(n, kChunk, num_threads, [&](int64_t c, int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        plan_negative_image(p + 4 * sp[i], sp[i + 1] - sp[i], positives.data() + qs[i],
                            qs[i + 1] - qs[i], sz[2 * i], sz[2 * i + 1], params, min_props, sd[i],
                            per_chunk[c]);
        chunk_images[c].resize(per_chunk[c].size(), static_cast<int32_t>(i));
      }
    });
  }
  return chips_to_dict(per_chunk, chunk_images);
}

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
  m.def("plan_positive_batch", &plan_positive_batch, py::arg("boxes"), py::arg("box_splits"),
        py::arg("image_sizes"), py::arg("scales"), py::arg("ranges"), py::arg("chip_size"),
        py::arg("stride"), py::arg("jitter"), py::arg("seeds"), py::arg("num_threads"));
  m.def("plan_positive_image", &plan_positive_image_checked, py::arg("boxes"), py::arg("height"),
        py::arg("width"), py::arg("scales"), py::arg("ranges"), py::arg("chip_size"),
        py::arg("stride"), py::arg("jitter"), py::arg("seed"));
  m.def("plan_negative_batch", &plan_negative_batch, py::arg("proposals"),
        py::arg("proposal_splits"), py::arg("positive_scale_index"), py::arg("positive_chips"),
        py::arg("positive_splits"), py::arg("image_sizes"), py::arg("scales"), py::arg("ranges"),
        py::arg("min_proposals"), py::arg("chip_size"), py::arg("stride"), py::arg("jitter"),
        py::arg("seeds"), py::arg("num_threads"));
  m.def("assign_boxes_batch", &assign_boxes_batch, py::arg("chip_image_index"),
        py::arg("chips_scaled"), py::arg("factors"), py::arg("chip_ranges"), py::arg("boxes"),
        py::arg("box_splits"), py::arg("crowd"), py::arg("min_inside"), py::arg("min_box_size"),
        py::arg("num_threads"));
  m.def("focus_chips_batch", &focus_chips_batch, py::arg("maps"), py::arg("map_shapes"),
        py::arg("map_offsets"), py::arg("threshold"), py::arg("dilation"), py::arg("min_size"),
        py::arg("num_threads"));
}
