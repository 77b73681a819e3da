// pybind11 entry points of the chip planner proper: positive chips (batch and the checked
// single-image fast path) and negative chips, over many images on several threads with the
// GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <thread>

#include "bindings_util.h"
#include "sniper_chips.h"

namespace chipping::bind {

namespace {

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

}  // namespace

void register_plan(py::module_& m) {
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
}

}  // namespace chipping::bind
