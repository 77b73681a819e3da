// FocusChips: binarize, dilate, connected components, grow to a minimum size, merge to a
// fixed point. See focus_chips.h.
#include "focus_chips.h"

#include <algorithm>
#include <tuple>

namespace chipping {
namespace {

// Separable square dilation of a binary map; see focus_chips.h for the offsets.
void dilate(std::vector<uint8_t>& on, int64_t h, int64_t w, int64_t dilation) {
  if (dilation <= 1) return;
  const int64_t before = (dilation - 1) / 2, after = dilation / 2;
  std::vector<uint8_t> tmp(on.size(), 0);
  // A cell is on if any cell within [x - after, x + before] was on (the source spreads
  // `before` to the left and `after` to the right).
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const int64_t lo = std::max<int64_t>(0, x - after), hi = std::min<int64_t>(w - 1, x + before);
      uint8_t v = 0;
      for (int64_t k = lo; k <= hi && !v; ++k) v = on[y * w + k];
      tmp[y * w + x] = v;
    }
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const int64_t lo = std::max<int64_t>(0, y - after), hi = std::min<int64_t>(h - 1, y + before);
      uint8_t v = 0;
      for (int64_t k = lo; k <= hi && !v; ++k) v = tmp[k * w + x];
      on[y * w + x] = v;
    }
}

// Bounding boxes of 8-connected components, in order of each component's first cell in
// raster order.
void components(const std::vector<uint8_t>& on, int64_t h, int64_t w, std::vector<CellRect>& out) {
  std::vector<uint8_t> seen(on.size(), 0);
  std::vector<int64_t> stack;
  for (int64_t start = 0; start < h * w; ++start) {
    if (!on[start] || seen[start]) continue;
    CellRect r{static_cast<int32_t>(start % w), static_cast<int32_t>(start / w),
               static_cast<int32_t>(start % w + 1), static_cast<int32_t>(start / w + 1)};
    seen[start] = 1;
    stack.assign(1, start);
    while (!stack.empty()) {
      const int64_t cell = stack.back();
      stack.pop_back();
      const int64_t cy = cell / w, cx = cell % w;
      r.x1 = std::min<int32_t>(r.x1, cx);
      r.y1 = std::min<int32_t>(r.y1, cy);
      r.x2 = std::max<int32_t>(r.x2, cx + 1);
      r.y2 = std::max<int32_t>(r.y2, cy + 1);
      for (int64_t dy = -1; dy <= 1; ++dy)
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t ny = cy + dy, nx = cx + dx;
          if (ny < 0 || ny >= h || nx < 0 || nx >= w) continue;
          const int64_t nb = ny * w + nx;
          if (on[nb] && !seen[nb]) {
            seen[nb] = 1;
            stack.push_back(nb);
          }
        }
    }
    out.push_back(r);
  }
}

// Grows [lo, hi) to at least `size` cells around its centre, shifted to stay in [0, limit).
void grow(int32_t& lo, int32_t& hi, int64_t size, int64_t limit) {
  const int64_t len = hi - lo;
  if (len >= size) return;
  if (size >= limit) {
    lo = 0;
    hi = static_cast<int32_t>(limit);
    return;
  }
  int64_t new_lo = lo - (size - len) / 2;
  new_lo = std::max<int64_t>(0, std::min<int64_t>(new_lo, limit - size));
  lo = static_cast<int32_t>(new_lo);
  hi = static_cast<int32_t>(new_lo + size);
}

inline bool overlaps(const CellRect& a, const CellRect& b) {
  return std::min(a.x2, b.x2) > std::max(a.x1, b.x1) && std::min(a.y2, b.y2) > std::max(a.y1, b.y1);
}

// Merges overlapping rectangles into their union until none overlap. Order: the first pair
// (i < j) found is merged into i, j is removed, and the scan of j restarts after i.
void merge(std::vector<CellRect>& rects) {
  bool changed = true;
  while (changed) {
    changed = false;
    for (size_t i = 0; i < rects.size(); ++i) {
      for (size_t j = i + 1; j < rects.size();) {
        if (overlaps(rects[i], rects[j])) {
          rects[i] =
              CellRect{std::min(rects[i].x1, rects[j].x1), std::min(rects[i].y1, rects[j].y1),
                       std::max(rects[i].x2, rects[j].x2), std::max(rects[i].y2, rects[j].y2)};
          rects.erase(rects.begin() + static_cast<std::ptrdiff_t>(j));
          changed = true;
          j = i + 1;
        } else {
          ++j;
        }
      }
    }
  }
}

}  // namespace

void focus_chips_map(const float* prob, int64_t height, int64_t width, double threshold,
                     int64_t dilation, int64_t min_size, std::vector<CellRect>& out) {
  if (height <= 0 || width <= 0) return;
  std::vector<uint8_t> on(static_cast<size_t>(height * width));
  for (int64_t i = 0; i < height * width; ++i) on[i] = static_cast<double>(prob[i]) >= threshold;
  dilate(on, height, width, dilation);
  std::vector<CellRect> rects;
  components(on, height, width, rects);
  for (CellRect& r : rects) {
    grow(r.x1, r.x2, min_size, width);
    grow(r.y1, r.y2, min_size, height);
  }
  merge(rects);
  std::sort(rects.begin(), rects.end(), [](const CellRect& a, const CellRect& b) {
    return std::tie(a.y1, a.x1, a.y2, a.x2) < std::tie(b.y1, b.x1, b.y2, b.x2);
  });
  out.insert(out.end(), rects.begin(), rects.end());
}

}  // namespace chipping
