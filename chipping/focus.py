"""FocusChips from FocusPixel probability maps (AutoFocus, docs/design.md section 5).

Rectangles are int32 XYXY in map cells (exclusive right/bottom edges). A map cell covers
``stride`` canvas pixels of the scale the map was computed at.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from chipping import _checks
from chipping._backend import backend_module


def _as_map(prob_map: object, name: str) -> np.ndarray:
    arr = np.asarray(prob_map)
    if (
        not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer))
        or arr.dtype == bool
    ):
        raise ValueError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (height, width), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and not np.isfinite(arr).all():
        y, x = (int(v) for v in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name}[{y}, {x}] = {arr[y, x]} is not finite")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], got values in [{arr.min()}, {arr.max()}]"
        )
    return arr


def _check_params(threshold: float, dilation: int, min_size: int) -> tuple[float, int, int]:
    t = _checks.check_real(threshold, "threshold")
    return (
        t,
        _checks.check_int(dilation, "dilation", 0, 4096),
        _checks.check_int(min_size, "min_size", 0),
    )


def focus_chips_batch(
    prob_maps: Sequence[np.ndarray],
    threshold: float,
    dilation: int = 3,
    min_size: int = 16,
    *,
    num_threads: int = 0,
    backend: str = "compiled",
) -> tuple[np.ndarray, np.ndarray]:
    """FocusChips of many maps at once (threads, GIL released); see ``focus_chips``.

    Returns:
        (rects int32 ``(K, 4)`` in cells, map_index int32 ``(K,)``), ordered by map.
    """
    if isinstance(prob_maps, np.ndarray) or not isinstance(prob_maps, Sequence):
        raise ValueError("prob_maps must be a list of 2-D arrays")
    maps = [_as_map(m, f"prob_maps[{i}]") for i, m in enumerate(prob_maps)]
    t, d, k = _check_params(threshold, dilation, min_size)
    shapes = np.array([m.shape for m in maps], dtype=np.int64).reshape(-1, 2)
    offsets = np.zeros(len(maps) + 1, dtype=np.int64)
    np.cumsum([m.size for m in maps], out=offsets[1:])
    flat = np.concatenate([m.reshape(-1) for m in maps]) if maps else np.zeros(0, np.float32)
    raw = backend_module(backend).focus_chips_batch(
        flat, shapes, offsets, t, d, k, _checks.check_threads(num_threads)
    )
    return (
        np.asarray(raw["rects"], dtype=np.int32).reshape(-1, 4),
        np.asarray(raw["map_index"], dtype=np.int32),
    )


def focus_chips(
    prob_map: np.ndarray,
    threshold: float,
    dilation: int = 3,
    min_size: int = 16,
    *,
    backend: str = "compiled",
) -> np.ndarray:
    """FocusChips of one FocusPixel probability map.

    Cells with ``prob >= threshold`` are on; the on-set is dilated by a ``dilation`` square
    (each on cell spreads ``(dilation - 1) // 2`` cells up/left and ``dilation // 2``
    down/right); each 8-connected component's bounding box is grown to at least
    ``min_size x min_size`` cells around its centre (shifted to stay inside the map, capped at
    the map size); overlapping rectangles are merged into their union until none overlap.

    Args:
        prob_map: float ``(H, W)`` probabilities in [0, 1].

    Returns:
        int32 ``(K, 4)`` XYXY rectangles in cells, sorted by (y1, x1, y2, x2).
    """
    rects, _ = focus_chips_batch(
        [prob_map], threshold, dilation, min_size, num_threads=1, backend=backend
    )
    return rects


def focus_chips_to_image(
    rects: np.ndarray,
    stride: float,
    factor: float,
    image_size: tuple[int, int],
    offset: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Maps cell rectangles to float32 XYXY image pixels, clipped to the image.

    A cell ``(x, y)`` of a map of stride ``stride`` computed on a crop resized by ``factor``
    whose top-left corner is at image pixel ``offset = (x0, y0)`` spans image pixels
    ``x0 + x * stride / factor`` to ``x0 + (x + 1) * stride / factor``.
    """
    height, width = _checks.check_image_size(image_size)
    step = _checks.check_real(stride, "stride", 0.0, open_min=True)
    f = _checks.check_real(factor, "factor", 0.0, open_min=True)
    if not isinstance(offset, (Sequence, np.ndarray)) or isinstance(offset, (str, bytes)):
        raise ValueError(f"offset must be an (x0, y0) pair, got {offset!r}")
    if len(offset) != 2:
        raise ValueError(f"offset must be an (x0, y0) pair, got {offset!r}")
    x0, y0 = (_checks.check_real(v, "offset") for v in offset)
    arr = _checks.as_box_array(rects, "rects")
    if not np.isfinite(arr).all():
        raise ValueError("rects must be finite")
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float64) * (step / f)
    out[:, [0, 2]] += x0
    out[:, [1, 3]] += y0
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out.astype(np.float32)
