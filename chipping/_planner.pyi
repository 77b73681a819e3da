"""Type stub of the compiled planner (chipping/csrc/bindings.cpp). Use ``chipping.planner``.

Arrays are converted to C-contiguous arrays of the dtype shown (pybind11 ``forcecast``).
Every batch function runs on ``num_threads`` threads (0 = all cores) with the GIL released,
and raises ValueError (from ``std::invalid_argument``) on inconsistent shapes or splits.
"""

from typing import TypedDict

import numpy as np
import numpy.typing as npt

ABI_VERSION: int

class _Chips(TypedDict):
    image_index: npt.NDArray[np.int32]  # (N,)
    scale_index: npt.NDArray[np.int32]  # (N,)
    chips_scaled: npt.NDArray[np.int32]  # (N, 4) XYXY canvas px
    factors: npt.NDArray[np.float64]  # (N,)
    counts: npt.NDArray[np.int32]  # (N,)

class _Assignment(TypedDict):
    valid_splits: npt.NDArray[np.int64]  # (N + 1,)
    valid_index: npt.NDArray[np.int64]  # (V,)
    valid_boxes: npt.NDArray[np.float32]  # (V, 4) chip px
    ignore_splits: npt.NDArray[np.int64]  # (N + 1,)
    ignore_index: npt.NDArray[np.int64]  # (G,)
    ignore_boxes: npt.NDArray[np.float32]  # (G, 4) chip px

class _FocusChips(TypedDict):
    rects: npt.NDArray[np.int32]  # (K, 4) XYXY cells
    map_index: npt.NDArray[np.int32]  # (K,)

def plan_positive_batch(
    boxes: npt.ArrayLike,  # float32 (B, 4) XYXY image px
    box_splits: npt.ArrayLike,  # int64 (N + 1,)
    image_sizes: npt.ArrayLike,  # int64 (N, 2) (height, width)
    scales: npt.ArrayLike,  # float64 (S, 3) rows (is_pair, a, b) of chipping.scales.parse_scales
    ranges: npt.ArrayLike,  # float64 (S, 2) [lo, hi) image px
    chip_size: int,
    stride: int,
    jitter: bool,
    seeds: npt.ArrayLike,  # uint64 (N,)
    num_threads: int,
) -> _Chips: ...
def plan_positive_image(
    boxes: npt.ArrayLike,  # float32 (N, 4) XYXY image px; checked: finite, ordered, inside
    height: int,
    width: int,
    scales: npt.ArrayLike,  # float64 (S, 3)
    ranges: npt.ArrayLike,  # float64 (S, 2)
    chip_size: int,
    stride: int,
    jitter: bool,
    seed: int,  # uint64
) -> tuple[
    npt.NDArray[np.int32],  # scale_index (N,)
    npt.NDArray[np.int32],  # chips_scaled (N, 4)
    npt.NDArray[np.float64],  # factors (N,)
    npt.NDArray[np.int32],  # counts (N,)
]: ...
def plan_negative_batch(
    proposals: npt.ArrayLike,  # float32 (P, 4) XYXY image px
    proposal_splits: npt.ArrayLike,  # int64 (N + 1,)
    positive_scale_index: npt.ArrayLike,  # int32 (Q,)
    positive_chips: npt.ArrayLike,  # int32 (Q, 4) XYXY canvas px, grouped by image
    positive_splits: npt.ArrayLike,  # int64 (N + 1,)
    image_sizes: npt.ArrayLike,  # int64 (N, 2)
    scales: npt.ArrayLike,  # float64 (S, 3)
    ranges: npt.ArrayLike,  # float64 (S, 2)
    min_proposals: npt.ArrayLike,  # int64 (S,)
    chip_size: int,
    stride: int,
    jitter: bool,
    seeds: npt.ArrayLike,  # uint64 (N,)
    num_threads: int,
) -> _Chips: ...
def assign_boxes_batch(
    chip_image_index: npt.ArrayLike,  # int32 (N,)
    chips_scaled: npt.ArrayLike,  # int32 (N, 4) XYXY canvas px
    factors: npt.ArrayLike,  # float64 (N,)
    chip_ranges: npt.ArrayLike,  # float64 (N, 2) [lo, hi) image px
    boxes: npt.ArrayLike,  # float32 (B, 4) XYXY image px
    box_splits: npt.ArrayLike,  # int64 (num_images + 1,)
    crowd: npt.ArrayLike,  # uint8 (B,)
    min_inside: float,
    min_box_size: float,
    num_threads: int,
) -> _Assignment: ...
def focus_chips_batch(
    maps: npt.ArrayLike,  # float32 (sum of H_i * W_i,) the maps flattened row-major
    map_shapes: npt.ArrayLike,  # int64 (M, 2) (height, width)
    map_offsets: npt.ArrayLike,  # int64 (M + 1,)
    threshold: float,
    dilation: int,
    min_size: int,
    num_threads: int,
) -> _FocusChips: ...
