// AutoFocus FocusChips from a FocusPixel probability map (docs/design.md section 5).
// Rectangles are in map cells, XYXY with exclusive right/bottom edges.
#pragma once

#include <cstdint>
#include <vector>

namespace chipping {

struct CellRect {
  int32_t x1, y1, x2, y2;
};

// prob: height x width row-major. Cells with prob >= threshold are "on"; the on-set is dilated
// by a dilation x dilation square (each on cell spreads (dilation - 1) / 2 cells up/left and
// dilation / 2 cells down/right; dilation <= 1 = none); 8-connected components give bounding
// boxes; each is grown to at least min_size x min_size cells around its centre (shifted to stay
// inside the map, capped at the map size); overlapping rectangles (positive-area intersection)
// are merged into their union until none overlap; the result is sorted by (y1, x1, y2, x2).
void focus_chips_map(const float* prob, int64_t height, int64_t width, double threshold,
                     int64_t dilation, int64_t min_size, std::vector<CellRect>& out);

}  // namespace chipping
