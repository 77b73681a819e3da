// SNIPER chip planning: greedy chip cover on a candidate grid, positive and negative chips,
// box-to-chip assignment. Plain C++17, thread-safe (no shared state), no Python.
#pragma once

#include <cstdint>
#include <vector>

#include "geometry.h"

namespace chipping {

// Settings shared by positive and negative planning.
struct PlanParams {
  std::vector<Scale> scales;
  std::vector<double> range_lo;  // per scale, image px, inclusive
  std::vector<double> range_hi;  // per scale, image px, exclusive (+inf = open)
  int64_t chip_size = 512;
  int64_t stride = 32;
  bool jitter = false;
};

// One planned chip: canvas corners (integers) at scale `scale_index` with factor `factor`;
// `count` = boxes (or proposals) it newly covered when the greedy cover picked it.
struct PlannedChip {
  int32_t scale_index;
  double factor;
  int32_t x1, y1, x2, y2;
  int32_t count;
};

// Positive chips for one image. boxes: n x 4 float32 XYXY image px (row-major).
void plan_positive_image(const float* boxes, int64_t n, int64_t height, int64_t width,
                         const PlanParams& params, uint64_t seed, std::vector<PlannedChip>& out);

// Negative chips for one image. proposals: n x 4 float32 XYXY image px. positives: the image's
// positive chips (any scale). min_proposals[s]: keep a chip only if it covers more than this
// many proposals not inside any positive chip of scale s.
void plan_negative_image(const float* proposals, int64_t n, const PlannedChip* positives,
                         int64_t num_positives, int64_t height, int64_t width,
                         const PlanParams& params, const std::vector<int64_t>& min_proposals,
                         uint64_t seed, std::vector<PlannedChip>& out);

// Box-to-chip assignment for one chip. Boxes n x 4 float32 XYXY image px; crowd[i] != 0 marks
// a box that is always ignore. Outputs box indices and clipped chip-pixel boxes.
struct AssignParams {
  double min_inside = 0.5;    // fraction of a box's area inside the chip to be a valid target
  double min_box_size = 2.0;  // chip px: clipped boxes narrower or lower than this are removed
};

struct ChipGeometry {
  int32_t x1, y1, x2, y2;  // canvas px
  double factor;
  double lo, hi;  // valid range, image px
};

void assign_chip(const ChipGeometry& chip, const float* boxes, const uint8_t* crowd, int64_t n,
                 const AssignParams& params, std::vector<int64_t>& valid_index,
                 std::vector<float>& valid_boxes, std::vector<int64_t>& ignore_index,
                 std::vector<float>& ignore_boxes);

}  // namespace chipping
