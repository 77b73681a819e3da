// Geometry shared by the SNIPER and AutoFocus planners: scales, candidate grids, the seeded
// random stream. Header-only; no Python, no torch.
//
// Frames: "image" = original image pixels; "canvas" = the image resized by a scale factor f
// (canvas x = image x * f); chips live on the canvas with integer corners. Boxes are XYXY
// with exclusive right/bottom edges (w = x2 - x1).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace chipping {

// A scale: either a factor on the image (is_pair == false, a = factor), or a
// (short-side target a, long-side cap b) pair; b <= 0 means no cap.
struct Scale {
  bool is_pair;
  double a;
  double b;
};

inline double scale_factor(const Scale& s, int64_t height, int64_t width) {
  if (!s.is_pair) return s.a;
  const double short_side = static_cast<double>(std::min(height, width));
  const double long_side = static_cast<double>(std::max(height, width));
  double f = s.a / short_side;
  if (s.b > 0) f = std::min(f, s.b / long_side);
  return f;
}

// Tolerance of the truncation below for the float rounding of length * f (canvas px).
constexpr double kCanvasEps = 1e-9;

// Canvas length of an image side of `length` pixels at factor f: truncated (as the original
// SNIPER), at least 1, so a chip never reaches past the image edge in image px. The twin is
// chipping.scales.scaled_length (docs/design.md section 3).
inline int64_t scaled_length(int64_t length, double f) {
  const int64_t n = static_cast<int64_t>(std::floor(static_cast<double>(length) * f + kCanvasEps));
  return std::max<int64_t>(1, n);
}

// splitmix64: the project's seeded random stream (the numpy reference implements the same).
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

struct SplitMix64 {
  uint64_t state;
  explicit SplitMix64(uint64_t seed) : state(seed) {}
  uint64_t next() {
    state += kGolden;
    return mix64(state);
  }
  // Uniform-ish integer in [0, n) (modulo reduction; n is small, the bias is negligible and
  // identical in the reference).
  uint64_t below(uint64_t n) { return next() % n; }
};

// Positions of chips of length `chip` along a canvas side of length `length`, stride `stride`,
// grid offset `offset` in [0, stride): {0 if offset > 0} + {offset + i*stride <= length - chip}
// + {length - chip}, ascending and unique. A side shorter than a chip has the single position 0
// and the chip spans the whole side.
inline void grid_positions(int64_t length, int64_t chip, int64_t stride, int64_t offset,
                           std::vector<int32_t>& out) {
  out.clear();
  if (length <= chip) {
    out.push_back(0);
    return;
  }
  const int64_t last = length - chip;
  if (offset > 0) out.push_back(0);
  for (int64_t p = offset; p <= last; p += stride) out.push_back(static_cast<int32_t>(p));
  if (out.back() != last) out.push_back(static_cast<int32_t>(last));
}

// A box in canvas pixels, double precision.
struct BoxD {
  double x1, y1, x2, y2;
};

// Size of an XYXY box: sqrt(w * h).
inline double box_size(double x1, double y1, double x2, double y2) {
  return std::sqrt((x2 - x1) * (y2 - y1));
}

// Half-open validity range [lo, hi) of box sizes in image pixels; hi may be +inf.
inline bool in_range(double size, double lo, double hi) { return size >= lo && size < hi; }

}  // namespace chipping
