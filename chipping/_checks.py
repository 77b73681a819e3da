"""Input validation for the planner: every problem is a ValueError naming argument and value."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chipping.scales import MAX_CANVAS_SIDE, _check_image_size

# Upper bound on candidate chips of one scale of one image (memory guard).
MAX_CANDIDATES = 50_000_000


def as_boxes(boxes: object, name: str) -> np.ndarray:
    """Returns ``boxes`` as C-contiguous float32 ``(N, 4)``; empty inputs give ``(0, 4)``."""
    arr = np.asarray(boxes)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) (XYXY), got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name}[{i}] = {arr[i].tolist()} is not finite (NaN or inf)")
    bad = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{i}] = {arr[i].tolist()} has negative width or height "
            f"(need x2 >= x1 and y2 >= y1)"
        )
    return arr


def check_inside(
    boxes: np.ndarray,
    heights: np.ndarray,
    widths: np.ndarray,
    name: str,
    splits: np.ndarray | None = None,
) -> None:
    """Raises if a box leaves its image; heights/widths are per box."""
    out = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > widths) | (boxes[:, 3] > heights)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        where = f"{name}[{i}]"
        if splits is not None:
            img = int(np.searchsorted(splits, i, side="right") - 1)
            where = f"{name} of image {img}, row {i - int(splits[img])}"
        raise ValueError(
            f"{where} = {boxes[i].tolist()} lies outside the image "
            f"(height {int(heights[i])}, width {int(widths[i])}); clip boxes to "
            f"[0, width] x [0, height] first"
        )


def flatten_boxes(
    boxes: object, box_splits: object | None, num_images: int, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated float32 ``(B, 4)`` boxes and int64 ``(num_images + 1,)`` offsets.

    ``boxes`` is either a sequence of per-image arrays (``box_splits`` None) or one
    concatenated array with ``box_splits`` offsets.
    """
    if box_splits is None:
        if not isinstance(boxes, Sequence) or isinstance(boxes, (str, bytes)):
            raise ValueError(
                f"{name} must be a list of per-image (N_i, 4) arrays, or one "
                f"(B, 4) array with {name[:-1] if name.endswith('s') else name}"
                f"_splits"
            )
        if len(boxes) != num_images:
            raise ValueError(f"{name} has {len(boxes)} entries for {num_images} images")
        parts = [as_boxes(b, f"{name}[{i}]") for i, b in enumerate(boxes)]
        counts = np.array([len(p) for p in parts], dtype=np.int64)
        flat = np.concatenate(parts) if parts else np.zeros((0, 4), np.float32)
        splits = np.zeros(num_images + 1, dtype=np.int64)
        np.cumsum(counts, out=splits[1:])
        return np.ascontiguousarray(flat), splits
    flat = as_boxes(boxes, name)
    splits = np.asarray(box_splits)
    if not np.issubdtype(splits.dtype, np.integer) or splits.shape != (num_images + 1,):
        raise ValueError(
            f"{name} splits must be {num_images + 1} integers, got "
            f"dtype {splits.dtype} shape {splits.shape}"
        )
    splits = splits.astype(np.int64)
    if splits[0] != 0 or splits[-1] != len(flat) or (np.diff(splits) < 0).any():
        raise ValueError(f"{name} splits must rise from 0 to {len(flat)}, got {splits.tolist()}")
    return flat, splits


def as_image_sizes(image_sizes: object, name: str = "image_sizes") -> np.ndarray:
    """int64 ``(N, 2)`` of (height, width), all positive."""
    arr = np.asarray(image_sizes)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if (
        arr.ndim != 2
        or arr.shape[1] != 2
        or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating))
    ):
        raise ValueError(
            f"{name} must be an (N, 2) array of (height, width), got "
            f"shape {arr.shape} dtype {arr.dtype}"
        )
    if np.issubdtype(arr.dtype, np.floating) and not (
        np.isfinite(arr).all() and (arr == np.round(arr)).all()
    ):
        raise ValueError(f"{name} must hold whole numbers of pixels")
    arr = arr.astype(np.int64)
    bad = (arr <= 0).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {arr[i].tolist()}: height and width must be > 0")
    return np.ascontiguousarray(arr)


def check_int(value: object, name: str, minimum: int, maximum: int | None = None) -> int:
    integral = isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and float(value).is_integer()
    )
    if isinstance(value, bool) or not integral:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if v < minimum or (maximum is not None and v > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {bound}, got {v}")
    return v


def check_grid(chip_size: object, stride: object) -> tuple[int, int]:
    chip = check_int(chip_size, "chip_size", 1, MAX_CANVAS_SIDE)
    step = check_int(stride, "stride", 1, chip)
    return chip, step


def check_canvases(
    image_sizes: np.ndarray, factors: np.ndarray, chip_size: int, stride: int
) -> None:
    """Guards against canvases (image size x factor) too large to plan.

    ``factors`` is ``(N, S)``: the factor of every scale for every image.
    """
    if len(image_sizes) == 0:
        return
    sides = image_sizes[:, None, :].astype(np.float64) * factors[:, :, None]
    if (sides > MAX_CANVAS_SIDE).any():
        i, s = (int(v) for v in np.argwhere((sides > MAX_CANVAS_SIDE).any(axis=2))[0])
        raise ValueError(
            f"scale {s} gives image {i} (height, width "
            f"{image_sizes[i].tolist()}) a canvas of {sides[i, s].tolist()} px; "
            f"the limit is {MAX_CANVAS_SIDE} px per side"
        )
    cells = np.prod(np.maximum(sides - chip_size, 0) / stride + 2, axis=2)
    if (cells > MAX_CANDIDATES).any():
        i, s = (int(v) for v in np.argwhere(cells > MAX_CANDIDATES)[0])
        raise ValueError(
            f"scale {s} of image {i} would need {cells[i, s]:.3g} candidate chips "
            f"(chip_size {chip_size}, stride {stride}); raise the stride"
        )


def check_image_size(image_size: object) -> tuple[int, int]:
    return _check_image_size(image_size)


def flatten_boxes_in_images(
    boxes: object, box_splits: object | None, image_sizes: np.ndarray, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """``flatten_boxes`` for ``len(image_sizes)`` images, then ``check_inside`` each box's
    own image (``image_sizes`` int ``(N, 2)`` of (height, width))."""
    flat, splits = flatten_boxes(boxes, box_splits, len(image_sizes), name)
    per_box = np.repeat(np.arange(len(image_sizes)), np.diff(splits))
    check_inside(flat, image_sizes[per_box, 0], image_sizes[per_box, 1], name, splits)
    return flat, splits
