// SNIPER chip planning. See sniper_chips.h and docs/design.md section 4.
//
// Greedy cover in O(boxes + candidates) per pick: the candidate chips that fully contain a box
// form a rectangle in grid-index space (positions are sorted), so the initial containment
// counts come from a 2-D difference array, and picking a chip only subtracts the rectangles of
// the boxes it newly covers. No containment count is recomputed from scratch.
#include "sniper_chips.h"

#include <algorithm>
#include <limits>

namespace chipping {
namespace {

struct IndexRect {
  int32_t x_lo, x_hi, y_lo, y_hi;  // inclusive grid-index ranges of chips containing the box
};

struct Workspace {
  std::vector<int32_t> xs, ys;
  std::vector<int32_t> counts;
  std::vector<BoxD> boxes;
  std::vector<IndexRect> rects;
  std::vector<uint8_t> covered;
};

Workspace& workspace() {
  thread_local Workspace ws;
  return ws;
}

// First index i with pos[i] + chip >= hi (chip reaches the box's far edge); pos ascending.
int32_t first_reaching(const std::vector<int32_t>& pos, int64_t chip, double hi) {
  auto it = std::lower_bound(pos.begin(), pos.end(), hi, [chip](int32_t p, double v) {
    return static_cast<double>(p + chip) < v;
  });
  return static_cast<int32_t>(it - pos.begin());
}

// Last index i with pos[i] <= lo (chip starts before the box's near edge); -1 if none.
int32_t last_starting(const std::vector<int32_t>& pos, double lo) {
  auto it = std::upper_bound(pos.begin(), pos.end(), lo,
                             [](double v, int32_t p) { return v < static_cast<double>(p); });
  return static_cast<int32_t>(it - pos.begin()) - 1;
}

// Random tie-break key of candidate c when jitter is on.
inline uint64_t tie_key(uint64_t perm_seed, int64_t c) {
  return mix64(perm_seed + static_cast<uint64_t>(c + 1) * kGolden);
}

// Greedy cover of ws.boxes (canvas px, clamped to the canvas) by the candidate grid ws.xs x
// ws.ys of chips cw x ch. Emits chips while the best chip newly covers more than keep_above.
void greedy_cover(Workspace& ws, int32_t scale_index, double factor, int64_t cw, int64_t ch,
                  bool jitter, uint64_t perm_seed, int64_t keep_above,
                  std::vector<PlannedChip>& out) {
  const int64_t nx = static_cast<int64_t>(ws.xs.size());
  const int64_t ny = static_cast<int64_t>(ws.ys.size());
  ws.rects.clear();
  for (const BoxD& b : ws.boxes) {
    IndexRect r{first_reaching(ws.xs, cw, b.x2), last_starting(ws.xs, b.x1),
                first_reaching(ws.ys, ch, b.y2), last_starting(ws.ys, b.y1)};
    if (r.x_lo <= r.x_hi && r.y_lo <= r.y_hi) ws.rects.push_back(r);
  }
  if (static_cast<int64_t>(ws.rects.size()) <= keep_above) return;

  // Containment counts via a (ny + 1) x (nx + 1) difference array, then 2-D prefix sums.
  const int64_t stride = nx + 1;
  ws.counts.assign(static_cast<size_t>((ny + 1) * stride), 0);
  int32_t* d = ws.counts.data();
  for (const IndexRect& r : ws.rects) {
    d[r.y_lo * stride + r.x_lo] += 1;
    d[r.y_lo * stride + r.x_hi + 1] -= 1;
    d[(r.y_hi + 1) * stride + r.x_lo] -= 1;
    d[(r.y_hi + 1) * stride + r.x_hi + 1] += 1;
  }
  for (int64_t y = 0; y < ny; ++y) {
    for (int64_t x = 1; x < nx; ++x) d[y * stride + x] += d[y * stride + x - 1];
    if (y > 0)
      for (int64_t x = 0; x < nx; ++x) d[y * stride + x] += d[(y - 1) * stride + x];
  }
  ws.covered.assign(ws.rects.size(), 0);

  while (true) {
    int64_t best = -1;
    int32_t best_count = 0;
    for (int64_t y = 0; y < ny; ++y) {
      const int32_t* row = d + y * stride;
      for (int64_t x = 0; x < nx; ++x) {
        const int32_t c = row[x];
        if (c > best_count) {
          best_count = c;
          best = y * nx + x;
        } else if (jitter && c == best_count && c > 0 &&
                   tie_key(perm_seed, y * nx + x) < tie_key(perm_seed, best)) {
          best = y * nx + x;
        }
      }
    }
    if (best < 0 || best_count <= keep_above) break;
    const int32_t bx = static_cast<int32_t>(best % nx), by = static_cast<int32_t>(best / nx);
    out.push_back(PlannedChip{scale_index, factor, ws.xs[bx], ws.ys[by],
                              static_cast<int32_t>(ws.xs[bx] + cw),
                              static_cast<int32_t>(ws.ys[by] + ch), best_count});
    for (size_t i = 0; i < ws.rects.size(); ++i) {
      const IndexRect& r = ws.rects[i];
      if (ws.covered[i] || bx < r.x_lo || bx > r.x_hi || by < r.y_lo || by > r.y_hi) continue;
      ws.covered[i] = 1;
      for (int64_t y = r.y_lo; y <= r.y_hi; ++y)
        for (int64_t x = r.x_lo; x <= r.x_hi; ++x) d[y * stride + x] -= 1;
    }
  }
}

// Canvas geometry of one scale of an image, with the scale's random draws when jittering.
struct ScaleCanvas {
  double factor;
  int64_t width, height, cw, ch;
  uint64_t perm_seed;
};

ScaleCanvas prepare_scale(Workspace& ws, const PlanParams& p, size_t s, int64_t height,
                          int64_t width, SplitMix64& rng) {
  ScaleCanvas c{};
  c.factor = scale_factor(p.scales[s], height, width);
  c.width = scaled_length(width, c.factor);
  c.height = scaled_length(height, c.factor);
  int64_t ox = 0, oy = 0;
  c.perm_seed = 0;
  if (p.jitter) {
    ox = static_cast<int64_t>(rng.below(static_cast<uint64_t>(p.stride)));
    oy = static_cast<int64_t>(rng.below(static_cast<uint64_t>(p.stride)));
    c.perm_seed = rng.next();
  }
  grid_positions(c.width, p.chip_size, p.stride, ox, ws.xs);
  grid_positions(c.height, p.chip_size, p.stride, oy, ws.ys);
  c.cw = std::min(p.chip_size, c.width);
  c.ch = std::min(p.chip_size, c.height);
  return c;
}

// Appends to ws.boxes the boxes valid at scale s, in canvas px clamped to the canvas.
void collect_valid(Workspace& ws, const float* boxes, int64_t n, const PlanParams& p, size_t s,
                   const ScaleCanvas& c) {
  ws.boxes.clear();
  const double w = static_cast<double>(c.width), h = static_cast<double>(c.height);
  for (int64_t i = 0; i < n; ++i) {
    const double x1 = boxes[4 * i], y1 = boxes[4 * i + 1];
    const double x2 = boxes[4 * i + 2], y2 = boxes[4 * i + 3];
    const double size = box_size(x1, y1, x2, y2);
    if (!(size > 0.0) || !in_range(size, p.range_lo[s], p.range_hi[s])) continue;
    ws.boxes.push_back(BoxD{std::min(x1 * c.factor, w), std::min(y1 * c.factor, h),
                            std::min(x2 * c.factor, w), std::min(y2 * c.factor, h)});
  }
}

}  // namespace

void plan_positive_image(const float* boxes, int64_t n, int64_t height, int64_t width,
                         const PlanParams& params, uint64_t seed, std::vector<PlannedChip>& out) {
  Workspace& ws = workspace();
  SplitMix64 rng(seed);
  for (size_t s = 0; s < params.scales.size(); ++s) {
    const ScaleCanvas c = prepare_scale(ws, params, s, height, width, rng);
    collect_valid(ws, boxes, n, params, s, c);
    greedy_cover(ws, static_cast<int32_t>(s), c.factor, c.cw, c.ch, params.jitter, c.perm_seed, 0,
                 out);
  }
}

void plan_negative_image(const float* proposals, int64_t n, const PlannedChip* positives,
                         int64_t num_positives, int64_t height, int64_t width,
                         const PlanParams& params, const std::vector<int64_t>& min_proposals,
                         uint64_t seed, std::vector<PlannedChip>& out) {
  Workspace& ws = workspace();
  SplitMix64 rng(seed);
  for (size_t s = 0; s < params.scales.size(); ++s) {
    const ScaleCanvas c = prepare_scale(ws, params, s, height, width, rng);
    collect_valid(ws, proposals, n, params, s, c);
    // Drop proposals fully inside a positive chip of this scale.
    auto inside_positive = [&](const BoxD& b) {
      for (int64_t k = 0; k < num_positives; ++k) {
        const PlannedChip& q = positives[k];
        if (q.scale_index == static_cast<int32_t>(s) && q.x1 <= b.x1 && b.x2 <= q.x2 &&
            q.y1 <= b.y1 && b.y2 <= q.y2)
          return true;
      }
      return false;
    };
    ws.boxes.erase(std::remove_if(ws.boxes.begin(), ws.boxes.end(), inside_positive),
                   ws.boxes.end());
    greedy_cover(ws, static_cast<int32_t>(s), c.factor, c.cw, c.ch, params.jitter, c.perm_seed,
                 min_proposals[s], out);
  }
}

void assign_chip(const ChipGeometry& chip, const float* boxes, const uint8_t* crowd, int64_t n,
                 const AssignParams& params, std::vector<int64_t>& valid_index,
                 std::vector<float>& valid_boxes, std::vector<int64_t>& ignore_index,
                 std::vector<float>& ignore_boxes) {
  const double f = chip.factor;
  const double cx1 = chip.x1, cy1 = chip.y1, cx2 = chip.x2, cy2 = chip.y2;
  for (int64_t i = 0; i < n; ++i) {
    const double x1 = boxes[4 * i], y1 = boxes[4 * i + 1];
    const double x2 = boxes[4 * i + 2], y2 = boxes[4 * i + 3];
    const double bx1 = x1 * f, by1 = y1 * f, bx2 = x2 * f, by2 = y2 * f;
    const double ix1 = std::max(bx1, cx1), iy1 = std::max(by1, cy1);
    const double ix2 = std::min(bx2, cx2), iy2 = std::min(by2, cy2);
    const double iw = ix2 - ix1, ih = iy2 - iy1;
    if (!(iw > 0.0) || !(ih > 0.0)) continue;  // does not overlap the chip
    if (iw < params.min_box_size || ih < params.min_box_size) continue;  // sliver: removed
    const double size = box_size(x1, y1, x2, y2);
    const double inside = (iw * ih) / ((bx2 - bx1) * (by2 - by1));
    const bool valid =
        crowd[i] == 0 && in_range(size, chip.lo, chip.hi) && inside >= params.min_inside;
    std::vector<int64_t>& index = valid ? valid_index : ignore_index;
    std::vector<float>& dst = valid ? valid_boxes : ignore_boxes;
    index.push_back(i);
    dst.push_back(static_cast<float>(ix1 - cx1));
    dst.push_back(static_cast<float>(iy1 - cy1));
    dst.push_back(static_cast<float>(ix2 - cx1));
    dst.push_back(static_cast<float>(iy2 - cy1));
  }
}

}  // namespace chipping
