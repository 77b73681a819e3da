"""A window of a COCO RLE mask, decoded without the full-image array.

``pycocotools.mask.decode`` gives the whole ``(H, W)`` image per instance; drawing (or any
use of) one instance needs only its box. A COCO RLE lists run lengths of alternating 0 / 1
pixels (starting with 0) in column-major order of the image, so the columns ``[x0, x1)``
are the flat indices ``[x0 * H, x1 * H)``: `rle_window` clips the runs to that band,
expands only it (``H * (x1 - x0)`` values) and cuts rows ``[y0, y1)``. `rle_runs` reads the
compressed ``counts`` string (pycocotools' ``rleFrString`` in ``maskApi.c``: 6-bit groups of
5 data bits + a continuation bit, offset by 48, sign-extended, each run after the second
stored as the difference to the run two before). Leaf module (numpy only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["rle_runs", "rle_window"]


def _size(rle: Mapping[str, Any]) -> tuple[int, int]:
    size = rle.get("size") if isinstance(rle, Mapping) else None
    if not isinstance(size, list | tuple) or len(size) != 2:
        raise ValueError(f"RLE 'size' must be [height, width], got {size!r}")
    h, w = (int(v) for v in size)
    if h < 0 or w < 0:
        raise ValueError(f"RLE 'size' must be >= 0, got {list(size)}")
    return h, w


def rle_runs(rle: Mapping[str, Any]) -> np.ndarray:
    """int64 run lengths of a COCO RLE (0-runs at even indices, 1-runs at odd ones).

    Args:
        rle: ``{"size": [H, W], "counts": ...}``, counts the compressed string (``str`` or
            ``bytes``) or a list of run lengths.
    Raises:
        ValueError: counts of another type, a negative run, or runs not summing to ``H * W``.
    """
    h, w = _size(rle)
    counts = rle.get("counts")
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if isinstance(counts, bytes):
        runs: list[int] = []
        p, n = 0, len(counts)
        while p < n:
            x, k, more = 0, 0, True
            while more:
                if p >= n:
                    raise ValueError("RLE 'counts' string ends inside a number")
                c = counts[p] - 48
                x |= (c & 0x1F) << (5 * k)
                more = bool(c & 0x20)
                p, k = p + 1, k + 1
                if not more and c & 0x10:
                    x |= -1 << (5 * k)
            if len(runs) > 2:
                x += runs[-2]
            runs.append(x)
        out = np.asarray(runs, np.int64)
    elif isinstance(counts, list | tuple | np.ndarray):
        out = np.asarray(counts, np.int64).reshape(-1)
    else:
        raise ValueError(
            f"RLE 'counts' must be a string or a list of run lengths, got {type(counts).__name__}"
        )
    if (out < 0).any() or int(out.sum()) != h * w:
        raise ValueError(
            f"RLE runs must be >= 0 and sum to height * width = {h * w}, got sum "
            f"{int(out.sum())}{' with a negative run' if (out < 0).any() else ''}"
        )
    return out


def rle_window(rle: Mapping[str, Any], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """bool ``(y1 - y0, x1 - x0)``: the mask on the image window ``[x0, x1) x [y0, y1)``
    (image px), equal to ``pycocotools.mask.decode(rle)[y0:y1, x0:x1]``.

    Raises:
        ValueError: a malformed RLE (`rle_runs`) or a window not inside the image.
    """
    h, w = _size(rle)
    x0, y0, x1, y1 = (int(v) for v in (x0, y0, x1, y1))
    if not (0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h):
        raise ValueError(
            f"window [{x0}, {x1}) x [{y0}, {y1}) is not inside the {h}x{w} (HxW) image"
        )
    runs = rle_runs(rle)
    ends = np.cumsum(runs)
    starts = ends - runs
    band0, band1 = x0 * h, x1 * h
    lengths = np.clip(np.minimum(ends, band1) - np.maximum(starts, band0), 0, None)
    values = (np.arange(len(runs)) % 2).astype(bool)
    flat = np.repeat(values, lengths)  # (H * (x1 - x0),) column-major band
    return flat.reshape(x1 - x0, h).T[y0:y1]
