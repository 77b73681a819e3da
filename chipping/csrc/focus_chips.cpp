// FocusChips: binarize, dilate, connected components, grow to a minimum size, merge to a
// fixed point. See focus_chips.h. Every step is linear in the map size (plus a near-linear
// term in the number of rectangles), whatever the parameters.
#include "focus_chips.h"

#include <algorithm>
#include <numeric>

namespace chipping {
namespace {

// Square dilation of a binary map (see focus_chips.h for the offsets): a cell is on if any
// cell within [x - after, x + before] x [y - after, y + before] was on (a source spreads
// `before` cells left/up and `after` right/down). Separable, with running counts of on cells
// in the window, row by row: O(h * w) whatever the dilation.
void dilate(std::vector<uint8_t>& on, int64_t h, int64_t w, int64_t dilation) {
  if (dilation <= 1) return;
  const int64_t before = (dilation - 1) / 2, after = dilation / 2;
  std::vector<uint8_t> rows(on.size());  // horizontal pass
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* src = on.data() + y * w;
    uint8_t* dst = rows.data() + y * w;
    int64_t count = 0;  // on cells of src in [x - after, x + before], clipped to the row
    for (int64_t k = 0; k <= std::min(before, w - 1); ++k) count += src[k];
    for (int64_t x = 0; x < w; ++x) {
      dst[x] = count > 0;
      if (x + before + 1 < w) count += src[x + before + 1];
      if (x - after >= 0) count -= src[x - after];
    }
  }
  std::vector<int32_t> count(static_cast<size_t>(w),
                             0);  // per column, rows [y - after, y + before]
  for (int64_t k = 0; k <= std::min(before, h - 1); ++k)
    for (int64_t x = 0; x < w; ++x) count[x] += rows[k * w + x];
  for (int64_t y = 0; y < h; ++y) {
    uint8_t* dst = on.data() + y * w;
    for (int64_t x = 0; x < w; ++x) dst[x] = count[x] > 0;
    if (y + before + 1 < h) {
      const uint8_t* add = rows.data() + (y + before + 1) * w;
      for (int64_t x = 0; x < w; ++x) count[x] += add[x];
    }
    if (y - after >= 0) {
      const uint8_t* sub = rows.data() + (y - after) * w;
      for (int64_t x = 0; x < w; ++x) count[x] -= sub[x];
    }
  }
}

struct Run {
  int32_t x1, x2, y;  // cells [x1, x2) of row y
};

int32_t find_root(std::vector<int32_t>& parent, int32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

// Bounding boxes of 8-connected components, in order of each component's first cell in
// raster order. Runs of on cells per row; a run joins the runs of the row above that touch
// it (8-connectivity: [x1 - 1, x2 + 1) meets them); union-find over runs. O(h * w).
void components(const std::vector<uint8_t>& on, int64_t h, int64_t w, std::vector<CellRect>& out) {
  std::vector<Run> runs;
  std::vector<int32_t> parent;
  size_t above = 0, row_start = 0;  // runs of the previous row: [above, row_start)
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* row = on.data() + y * w;
    row_start = runs.size();
    for (int64_t x = 0; x < w;) {
      if (!row[x]) {
        ++x;
        continue;
      }
      const int64_t x1 = x;
      while (x < w && row[x]) ++x;
      const int32_t id = static_cast<int32_t>(runs.size());
      runs.push_back(
          Run{static_cast<int32_t>(x1), static_cast<int32_t>(x), static_cast<int32_t>(y)});
      parent.push_back(id);
      // Runs above touching [x1 - 1, x + 1): skip those ending before x1 - 1 (kept sorted).
      while (above < row_start && runs[above].x2 < x1) ++above;
      for (size_t k = above; k < row_start && runs[k].x1 <= x; ++k) {
        const int32_t a = find_root(parent, static_cast<int32_t>(k)), b = find_root(parent, id);
        if (a != b) parent[std::max(a, b)] = std::min(a, b);
      }
    }
    above = row_start;
  }
  // The root of each component is its first run (unions keep the smaller id): raster order.
  std::vector<int32_t> index(runs.size(), -1);
  for (size_t i = 0; i < runs.size(); ++i) {
    const int32_t root = find_root(parent, static_cast<int32_t>(i));
    const Run& r = runs[i];
    if (index[root] < 0) {
      index[root] = static_cast<int32_t>(out.size());
      out.push_back(CellRect{r.x1, r.y, r.x2, r.y + 1});
      continue;
    }
    CellRect& c = out[index[root]];
    c.x1 = std::min(c.x1, r.x1);
    c.x2 = std::max(c.x2, r.x2);
    c.y2 = r.y + 1;
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

inline bool contains(const CellRect& a, const CellRect& b) {
  return a.x1 <= b.x1 && a.y1 <= b.y1 && b.x2 <= a.x2 && b.y2 <= a.y2;
}

inline CellRect hull(const CellRect& a, const CellRect& b) {
  return CellRect{std::min(a.x1, b.x1), std::min(a.y1, b.y1), std::max(a.x2, b.x2),
                  std::max(a.y2, b.y2)};
}

// The fixed point of "merge overlapping rectangles into their union until none overlap",
// computed by inserting the rectangles one at a time into a set of pairwise disjoint ones
// (the live rectangles).
//
// owner[cell] is the id of the insertion that claimed the cell (-1: free). Claimed cells stay
// claimed: the id resolves (union-find) to the live rectangle holding the cell, whose box is
// fully claimed. Inserting R: if R lies inside the live rectangle of its top-left cell it is
// absorbed (O(1)). Otherwise the group box G (R, then its hull with every live rectangle
// met) is explored where it is new, until it stops growing. Exploring a piece looks at its
// top-left cell: a live rectangle there is met and cut away from the piece whole (it holds
// that corner, so at most 2 pieces remain); a free cell starts a run of free cells along the
// row, which is claimed. Cells are claimed once, so the merge costs O(h * w) plus a small
// term per live rectangle met and per run; the rectangles met are joined to R at the end.
//
// It reaches the same fixed point as the all-pairs merge: every union joins overlapping
// rectangles, which any fixed point must hold together, and no two live rectangles overlap.
class DisjointMerge {
 public:
  DisjointMerge(int64_t h, int64_t w, size_t n) : w_(w), owner_(static_cast<size_t>(h * w), -1) {
    parent_.reserve(n);
    box_.reserve(n);
    met_.reserve(n);
  }

  void insert(const CellRect& r) {
    const int32_t top_left = owner_[r.y1 * w_ + r.x1];
    if (top_left >= 0 && contains(box_[find(top_left)], r)) return;
    group_ = static_cast<int32_t>(parent_.size());
    parent_.push_back(group_);
    box_.push_back(r);
    met_.push_back(0);
    CellRect done{r.x1, r.y1, r.x1, r.y1};  // the part of G already explored (empty)
    while (!same(done, box_[group_])) {
      const CellRect g = box_[group_];
      // G minus done: rows above and below done, then the parts left and right of it.
      pieces_.push_back(CellRect{g.x1, g.y1, g.x2, done.y1});
      pieces_.push_back(CellRect{g.x1, done.y2, g.x2, g.y2});
      pieces_.push_back(CellRect{g.x1, done.y1, done.x1, done.y2});
      pieces_.push_back(CellRect{done.x2, done.y1, g.x2, done.y2});
      explore();
      done = g;
    }
    for (int32_t root : joined_) {
      parent_[root] = group_;
      met_[root] = 0;
    }
    joined_.clear();
  }

  // The live rectangles (the roots), unordered.
  void result(std::vector<CellRect>& out) const {
    for (size_t id = 0; id < parent_.size(); ++id)
      if (parent_[id] == static_cast<int32_t>(id)) out.push_back(box_[id]);
  }

 private:
  static bool same(const CellRect& a, const CellRect& b) {
    return a.x1 == b.x1 && a.y1 == b.y1 && a.x2 == b.x2 && a.y2 == b.y2;
  }

  int32_t find(int32_t i) {
    while (parent_[i] != i) {
      parent_[i] = parent_[parent_[i]];
      i = parent_[i];
    }
    return i;
  }

  // Claims the free cells of the pending pieces and meets every live rectangle in them.
  void explore() {
    while (!pieces_.empty()) {
      const CellRect p = pieces_.back();
      pieces_.pop_back();
      if (p.x1 >= p.x2 || p.y1 >= p.y2) continue;
      int32_t* row = owner_.data() + p.y1 * w_;
      const int32_t o = row[p.x1];
      if (o >= 0) {
        const int32_t root = find(o);
        const CellRect b = box_[root];  // holds (p.x1, p.y1): b.x1 <= p.x1, b.y1 <= p.y1
        if (!met_[root]) {
          met_[root] = 1;
          joined_.push_back(root);
          box_[group_] = hull(box_[group_], b);
        }
        const int32_t y_end = std::min(b.y2, p.y2);
        pieces_.push_back(CellRect{b.x2, p.y1, p.x2, y_end});
        pieces_.push_back(CellRect{p.x1, y_end, p.x2, p.y2});
      } else {
        int32_t x = p.x1;
        while (x < p.x2 && row[x] < 0) row[x++] = group_;
        pieces_.push_back(CellRect{x, p.y1, p.x2, p.y1 + 1});
        pieces_.push_back(CellRect{p.x1, p.y1 + 1, p.x2, p.y2});
      }
    }
  }

  int64_t w_;
  std::vector<int32_t> owner_, parent_, joined_;
  std::vector<uint8_t> met_;
  std::vector<CellRect> box_, pieces_;
  int32_t group_ = -1;
};

// Stable counting sort of rectangles by one coordinate in [0, limit].
void counting_sort(std::vector<CellRect>& rects, int32_t CellRect::* key, int64_t limit) {
  std::vector<int64_t> start(static_cast<size_t>(limit + 2), 0);
  for (const CellRect& r : rects) ++start[r.*key + 1];
  std::partial_sum(start.begin(), start.end(), start.begin());
  std::vector<CellRect> sorted(rects.size());
  for (const CellRect& r : rects) sorted[start[r.*key]++] = r;
  rects.swap(sorted);
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
  on = std::vector<uint8_t>();
  DisjointMerge merge(height, width, rects.size());
  for (CellRect& r : rects) {
    grow(r.x1, r.x2, min_size, width);
    grow(r.y1, r.y2, min_size, height);
    merge.insert(r);
  }
  rects.clear();
  merge.result(rects);  // (rects keeps its capacity: no reallocation)
  // Disjoint rectangles have distinct top-left corners: sorting by (y1, x1) is the order
  // (y1, x1, y2, x2). Two stable counting sorts, O(n + h + w).
  const auto by_corner = [](const CellRect& a, const CellRect& b) {
    return a.y1 != b.y1 ? a.y1 < b.y1 : a.x1 < b.x1;
  };
  if (!std::is_sorted(rects.begin(), rects.end(), by_corner)) {
    counting_sort(rects, &CellRect::x1, width);
    counting_sort(rects, &CellRect::y1, height);
  }
  out.insert(out.end(), rects.begin(), rects.end());
}

}  // namespace chipping
