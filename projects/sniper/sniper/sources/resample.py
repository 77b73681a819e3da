"""The resampling of windowed sources, equal to ``sniper.image_ops.cut_chip``'s on a whole
image (up to uint8 rounding for shrinking).

* **Shrinking** (canvas coarser than the level read): *area* averaging, what
  ``cv2.resize(..., INTER_AREA)`` does when it shrinks: canvas px ``j`` of a side of ``n_out``
  px is the mean of the level's px over ``[j * s, (j + 1) * s)`` with ``s = n_in / n_out``
  (fractional px weighted by their covered length). ``area_resize_axis`` computes it from a
  cumulative sum (float64), for any window of the output and only the input rows/columns it
  covers (``area_span``), so a source can read and shrink a huge level band by band.
* **Enlarging** (factor >= 1): bilinear ``cv2.warpAffine`` with ``cut_chip``'s pixel-centre
  mapping ``canvas = f * (image + 0.5) - 0.5``; ``warp_span`` gives the image px a window
  samples, so the result from that region equals ``cut_chip`` on the whole image exactly.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["area_resize_axis", "area_span", "warp_region", "warp_span"]


def area_span(start: int, stop: int, n_in: int, n_out: int) -> tuple[int, int]:
    """Input px ``[lo, hi)`` that output px ``[start, stop)`` of an area resize of a side of
    ``n_in`` px to ``n_out`` px cover (``0 <= start < stop <= n_out``)."""
    s = n_in / n_out
    lo = int(math.floor(start * s))
    hi = min(n_in, int(math.ceil(stop * s - 1e-9)))
    return lo, max(hi, lo + 1)


def area_resize_axis(
    data: np.ndarray, axis: int, offset: int, start: int, stop: int, n_in: int, n_out: int
) -> np.ndarray:
    """Area-resize ``data`` along ``axis``: output px ``[start, stop)`` of a side of ``n_in``
    px shrunk to ``n_out``, from ``data`` holding input px ``[offset, offset +
    data.shape[axis])`` of that side (it must include ``area_span(start, stop, ...)``).

    Returns:
        float64, ``data``'s shape with ``stop - start`` along ``axis`` (not rounded).
    """
    s = n_in / n_out
    x = np.moveaxis(np.asarray(data, np.float64), axis, 0)
    n = x.shape[0]
    cum = np.zeros((n + 1, *x.shape[1:]), np.float64)
    np.cumsum(x, axis=0, out=cum[1:])
    edges = np.minimum(np.arange(start, stop + 1, dtype=np.float64) * s, n_in) - offset
    if edges[0] < -1e-9 or edges[-1] > n + 1e-9:
        raise ValueError(
            f"input px [{offset}, {offset + n}) do not cover output px [{start}, {stop})"
        )
    edges = np.clip(edges, 0.0, float(n))
    whole = np.minimum(np.floor(edges).astype(np.int64), n - 1)
    frac = (edges - whole).reshape(-1, *([1] * (x.ndim - 1)))
    integral = cum[whole] + frac * x[whole]
    lengths = np.diff(edges).reshape(-1, *([1] * (x.ndim - 1)))
    out = np.diff(integral, axis=0) / np.maximum(lengths, 1e-12)
    return np.moveaxis(out, 0, axis)


def warp_span(start: int, stop: int, factor: float, n_img: int) -> tuple[int, int]:
    """Image px ``[lo, hi)`` that canvas px ``[start, stop)`` at ``factor`` (>= 1) sample
    bilinearly (both neighbours of every sample point, clamped to the image's ``n_img``)."""
    first = (start + 0.5) / factor - 0.5
    last = (stop - 0.5) / factor - 0.5
    lo = max(0, int(math.floor(first)) - 1)
    hi = min(n_img, int(math.floor(last)) + 3)
    return lo, max(hi, lo + 1)


def warp_region(
    region: np.ndarray,
    origin: tuple[int, int],
    canvas_box: tuple[int, int, int, int],
    factor: float,
) -> np.ndarray:
    """The canvas window ``canvas_box`` at ``factor`` from ``region``, the image px whose
    top-left is ``origin`` ``(x0, y0)`` (it must include ``warp_span`` of the window on both
    axes, image edges included where the window touches them).

    Returns:
        ``region``'s dtype, ``(y2 - y1, x2 - x1, C)``: ``cut_chip``'s bilinear window.
    """
    x1, y1, x2, y2 = canvas_box
    shift = 0.5 * (factor - 1.0)
    m = np.array(
        [
            [factor, 0.0, shift - x1 + factor * origin[0]],
            [0.0, factor, shift - y1 + factor * origin[1]],
        ],
        np.float64,
    )
    return cv2.warpAffine(
        np.ascontiguousarray(region),
        m,
        (x2 - x1, y2 - y1),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
