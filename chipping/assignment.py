"""Box assignment (docs/design.md section 4): the valid and ignore boxes of every chip."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chipping import _checks
from chipping._backend import backend_module
from chipping.plan_types import ChipAssignment, ChipPlan


def _crowd_flags(crowd: object, per_image: bool, n: int, num_boxes: int) -> np.ndarray:
    """uint8 ``(num_boxes,)`` crowd flags from bool or 0/1 integer arrays (per image, or one
    flat array); anything else (strings, floats, other integers) is a ValueError."""
    if crowd is None:
        return np.zeros(num_boxes, dtype=np.uint8)
    if per_image:
        if not isinstance(crowd, Sequence) or isinstance(crowd, (str, bytes)) or len(crowd) != n:
            raise ValueError(f"crowd must be a list of {n} per-image flag arrays, got {crowd!r}")
        parts = list(crowd)
    else:
        parts = [crowd]
    arrays = []
    for i, c in enumerate(parts):
        arr = np.asarray(c)
        bad = arr.dtype.kind not in "biu" or (
            arr.dtype.kind != "b" and ((arr != 0) & (arr != 1)).any()
        )
        if bad or arr.ndim > 1:
            raise ValueError(
                f"crowd[{i}] must be a 1-D array of bools (or 0/1), got dtype {arr.dtype} "
                f"shape {arr.shape}"
            )
        arrays.append(arr.reshape(-1).astype(np.uint8))
    flags = np.concatenate(arrays) if arrays else np.zeros(0, np.uint8)
    if flags.shape != (num_boxes,):
        raise ValueError(f"crowd must have one flag per box ({num_boxes}), got {flags.shape[0]}")
    return flags


def assign_boxes_batch(
    chips: ChipPlan,
    boxes: Sequence[np.ndarray] | np.ndarray,
    *,
    box_splits: np.ndarray | None = None,
    crowd: Sequence[np.ndarray] | np.ndarray | None = None,
    min_inside: float = 0.5,
    min_box_size: float = 2.0,
    num_threads: int = 0,
    backend: str = "compiled",
) -> ChipAssignment:
    """Valid and ignore boxes of every chip, in chip pixels.

    For chip ``k`` (image ``chips.image_index[k]``), each box of that image overlapping the
    chip is clipped to it and mapped to chip pixels ``(box * factor - chip corner)``; if the
    clipped box is narrower or lower than ``min_box_size`` chip px it is removed. It is
    *valid* if it is not crowd, its size (image px) is in the chip's range, and at least
    ``min_inside`` of its area lies inside the chip; every other overlapping box is *ignore*.

    Args:
        boxes: per-image arrays (one per image of the plan, ``max(image_index) + 1`` at
            least), or one array with ``box_splits``.
        crowd: per-box flags (same layout as boxes): crowd boxes are always ignore.
    """
    if not isinstance(chips, ChipPlan):
        raise ValueError(f"chips must be a ChipPlan, got {type(chips).__name__}")
    if box_splits is not None:
        if not isinstance(box_splits, (Sequence, np.ndarray)) or len(box_splits) < 1:
            raise ValueError(f"box_splits must be a 1-D array of offsets, got {box_splits!r}")
        n = len(box_splits) - 1
    elif isinstance(boxes, Sequence) and not isinstance(boxes, (str, bytes)):
        n = len(boxes)
    else:
        raise ValueError("boxes must be a list of per-image arrays, or one array with box_splits")
    flat, splits = _checks.flatten_boxes(boxes, box_splits, n, "boxes")
    if len(chips) and (chips.image_index.min() < 0 or chips.image_index.max() >= n):
        raise ValueError(
            f"chips refer to image {int(chips.image_index.max())} but boxes are "
            f"given for {n} images"
        )
    if len(chips) and (
        chips.scale_index.min() < 0 or chips.scale_index.max() >= len(chips.valid_ranges)
    ):
        raise ValueError(
            f"chips.scale_index must index the {len(chips.valid_ranges)} rows of "
            f"chips.valid_ranges, got values in [{chips.scale_index.min()}, "
            f"{chips.scale_index.max()}]"
        )
    flags = _crowd_flags(crowd, box_splits is None, n, len(flat))
    min_inside = _checks.check_real(min_inside, "min_inside", 0.0, 1.0)
    min_box_size = _checks.check_real(min_box_size, "min_box_size", 0.0)
    raw = backend_module(backend).assign_boxes_batch(
        np.ascontiguousarray(chips.image_index, dtype=np.int32),
        np.ascontiguousarray(chips.chips_scaled, dtype=np.int32),
        np.ascontiguousarray(chips.factors, dtype=np.float64),
        np.ascontiguousarray(chips.chip_ranges, dtype=np.float64),
        flat,
        splits,
        flags,
        min_inside,
        min_box_size,
        _checks.check_threads(num_threads),
    )
    return ChipAssignment.from_raw(raw)


def assign_boxes(
    chips: ChipPlan,
    boxes: np.ndarray,
    *,
    crowd: np.ndarray | None = None,
    min_inside: float = 0.5,
    min_box_size: float = 2.0,
    backend: str = "compiled",
) -> ChipAssignment:
    """Valid and ignore boxes of each chip of one image; see ``assign_boxes_batch``."""
    if isinstance(chips, ChipPlan) and len(chips) and len(np.unique(chips.image_index)) > 1:
        raise ValueError("chips span several images; use assign_boxes_batch")
    if isinstance(chips, ChipPlan):
        chips = ChipPlan._trusted(
            image_index=np.zeros_like(chips.image_index),
            scale_index=chips.scale_index,
            chips_scaled=chips.chips_scaled,
            factors=chips.factors,
            counts=chips.counts,
            valid_ranges=chips.valid_ranges,
        )
    return assign_boxes_batch(
        chips,
        [boxes],
        crowd=None if crowd is None else [crowd],
        min_inside=min_inside,
        min_box_size=min_box_size,
        num_threads=1,
        backend=backend,
    )
