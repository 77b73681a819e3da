"""Input validation for the planner: every problem is a ValueError naming argument and value."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chipping._numbers import check_bool, check_int, check_real  # noqa: F401 (re-exported)
from chipping.scales import MAX_CANVAS_SIDE, _check_image_size

# Upper bound on candidate chips of one scale of one image (memory guard).
MAX_CANDIDATES = 50_000_000
# Smallest resize factor planned (below it a canvas pixel is over a million image pixels).
MIN_FACTOR = 1e-6
# Largest thread count accepted (0 = all cores).
MAX_THREADS = 4096


def as_box_array(boxes: object, name: str) -> np.ndarray:
    """``boxes`` as a real-valued ``(N, 4)`` array (any int/float dtype, not yet converted).

    "No boxes" is an empty array of shape ``(0, 4)`` or ``(0,)`` (``[]``) only: ``(3, 0)`` or
    ``(0, 5)`` is refused. Values are not checked (``as_boxes`` does).
    """
    try:
        arr = np.asarray(boxes)
    except (ValueError, TypeError, OverflowError) as e:  # ragged lists, huge ints
        raise ValueError(f"{name} must be an (N, 4) array of XYXY boxes: {e}") from None
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
    if arr.shape == (0,):
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) (XYXY), got {arr.shape}")
    return arr


def as_boxes(boxes: object, name: str) -> np.ndarray:
    """Returns ``boxes`` as C-contiguous float32 ``(N, 4)``, finite, with ``x2 >= x1`` and
    ``y2 >= y1``; "no boxes" is ``(0, 4)`` or ``(0,)`` (see ``as_box_array``)."""
    with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf: "not finite"
        arr = np.ascontiguousarray(as_box_array(boxes, name), dtype=np.float32)
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
    try:
        arr = np.asarray(image_sizes)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"{name} must be an (N, 2) array of (height, width): {e}") from None
    if arr.shape in ((0,), (0, 2)) and arr.dtype.kind in "iuf":
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{name} must be an (N, 2) array of (height, width), got "
            f"shape {arr.shape} dtype {arr.dtype}"
        )
    whole = np.isfinite(arr) & (arr == np.round(arr)) if arr.dtype.kind == "f" else None
    if whole is not None and not whole.all():
        i = int(np.flatnonzero(~whole.all(axis=1))[0])
        raise ValueError(f"{name}[{i}] = {arr[i].tolist()} must be whole numbers of pixels")
    bad = (arr <= 0).any(axis=1) | (arr > MAX_CANVAS_SIDE).any(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name}[{i}] = {arr[i].tolist()}: height and width must be in [1, {MAX_CANVAS_SIDE}]"
        )
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_threads(num_threads: object) -> int:
    """``num_threads`` as an int in ``[0, MAX_THREADS]`` (0 = all cores)."""
    return check_int(num_threads, "num_threads", 0, MAX_THREADS)


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
    small = factors < MIN_FACTOR
    if small.any():
        i, s = (int(v) for v in np.argwhere(small)[0])
        raise ValueError(
            f"scales[{s}] gives image {i} (height, width {image_sizes[i].tolist()}) the factor "
            f"{factors[i, s]:.3g}; the smallest factor planned is {MIN_FACTOR}"
        )
    sides = image_sizes[:, None, :].astype(np.float64) * factors[:, :, None]
    if (sides > MAX_CANVAS_SIDE).any():
        i, s = (int(v) for v in np.argwhere((sides > MAX_CANVAS_SIDE).any(axis=2))[0])
        raise ValueError(
            f"scales[{s}] gives image {i} (height, width "
            f"{image_sizes[i].tolist()}) a canvas of {sides[i, s].tolist()} px; "
            f"the limit is {MAX_CANVAS_SIDE} px per side"
        )
    cells = np.prod(np.maximum(sides - chip_size, 0) / stride + 2, axis=2)
    if (cells > MAX_CANDIDATES).any():
        i, s = (int(v) for v in np.argwhere(cells > MAX_CANDIDATES)[0])
        raise ValueError(
            f"scales[{s}] of image {i} would need {cells[i, s]:.3g} candidate chips "
            f"(chip_size {chip_size}, stride {stride}); raise the stride"
        )


def check_canvas(
    height: int, width: int, factors: Sequence[float], chip_size: int, stride: int
) -> None:
    """``check_canvases`` for one image (plain Python floats: the single-image fast path);
    same rule, same arithmetic, same messages."""
    for s, f in enumerate(factors):
        if f < MIN_FACTOR:
            raise ValueError(
                f"scales[{s}] gives image 0 (height, width {[height, width]}) the factor "
                f"{f:.3g}; the smallest factor planned is {MIN_FACTOR}"
            )
        sides = (height * f, width * f)
        if max(sides) > MAX_CANVAS_SIDE:
            raise ValueError(
                f"scales[{s}] gives image 0 (height, width {[height, width]}) a canvas of "
                f"{list(sides)} px; the limit is {MAX_CANVAS_SIDE} px per side"
            )
        cells = (max(sides[0] - chip_size, 0) / stride + 2) * (
            max(sides[1] - chip_size, 0) / stride + 2
        )
        if cells > MAX_CANDIDATES:
            raise ValueError(
                f"scales[{s}] of image 0 would need {cells:.3g} candidate chips "
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
