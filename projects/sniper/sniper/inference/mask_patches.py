"""Compact instance masks at test time: an ``M x M`` probability patch plus its box, pasted
into the image only when asked (docs/design.md section 6).

A detection's mask is the model's ``(M, M)`` patch (sigmoid probabilities, M = 28 for the
torchvision mask head) over its box ``(x1, y1, x2, y2)`` (any frame, float XYXY, exclusive
right/bottom edge): the continuous box is divided into ``M x M`` equal cells, cell ``(r, c)``
covering ``x in [x1 + c * w / M, x1 + (c + 1) * w / M)`` (same for y). The patch never
changes when the box is mapped between frames (input px -> image px is an affine map of the
box): the box *is* the patch's frame.

**Pasting rule.** Pixel ``(u, v)`` of an ``(H, W)`` image belongs to the mask when

1. its centre ``(u + 0.5, v + 0.5)`` lies inside the box (half-open: ``x1 <= u + 0.5 < x2``,
   ``y1 <= v + 0.5 < y2``) and ``0 <= u < W``, ``0 <= v < H`` (only pixels of the image), and
2. the patch sampled bilinearly at that centre is ``>= threshold``. Cell centres are at
   ``x1 + (c + 0.5) * w / M``; a centre before the first / after the last cell centre takes
   the border cell's value (clamped).

Bilinear sampling is separable: the values of the box-sized window are ``Wy @ patch @ Wx.T``
with ``Wy`` ``(h, M)``, ``Wx`` ``(w, M)`` holding at most two weights per row (computed in
row blocks, so a huge box needs only its boolean mask at once). A box with no pixel centre
inside (narrower than a pixel, or outside the image) pastes nothing.

**RLE.** ``patch_to_rle`` writes the uncompressed column-major COCO run lengths straight from
the local window (the rest of the image is 0) and compresses them with pycocotools
(``frPyObjects``), so no ``(H, W)`` array is made, whatever the image size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pycocotools.mask as mask_util

__all__ = ["paste_patch", "patch_to_rle", "patches_to_rle", "window_runs"]

_ROW_BLOCK = 1024  # rows of the float window computed at once


def _check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if height < 1 or width < 1 or (height, width) != tuple(image_size):
        raise ValueError(f"image_size must be two integers >= 1, got {tuple(image_size)!r}")
    return height, width


def _check_patch_box(patch: Any, box: Any, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    patch = np.asarray(patch, dtype=np.float64)
    if patch.ndim != 2 or patch.shape[0] != patch.shape[1] or patch.shape[0] < 1:
        raise ValueError(f"patch must be a square (M, M) array, M >= 1; got {patch.shape}")
    if not np.isfinite(patch).all():
        raise ValueError("patch holds NaN or infinite values")
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise ValueError(f"box must be 4 finite numbers (x1, y1, x2, y2), got {box.tolist()}")
    if not np.isfinite(float(threshold)):
        raise ValueError(f"threshold must be finite, got {threshold}")
    return patch, box


def _pixel_span(lo: float, hi: float, limit: int) -> tuple[int, int]:
    """``[a, b)``: the pixels whose centre ``p + 0.5`` lies in ``[lo, hi)``, within
    ``[0, limit)``."""
    a = min(max(int(np.ceil(lo - 0.5)), 0), limit)
    b = min(int(np.ceil(hi - 0.5)), limit)
    return a, max(a, b)


def _weights(first: int, count: int, lo: float, hi: float, m: int) -> np.ndarray:
    """float64 ``(count, m)``: bilinear weights of pixels ``first .. first + count - 1`` on
    the ``m`` cell centres of the span ``[lo, hi)`` (clamped at the border cells)."""
    centres = np.arange(first, first + count, dtype=np.float64) + 0.5
    t = np.clip((centres - lo) * (m / (hi - lo)) - 0.5, 0.0, m - 1)
    c0 = np.floor(t).astype(np.int64)
    c1 = np.minimum(c0 + 1, m - 1)
    a = t - c0
    w = np.zeros((count, m), np.float64)
    rows = np.arange(count)
    np.add.at(w, (rows, c0), 1.0 - a)
    np.add.at(w, (rows, c1), a)
    return w


def paste_patch(
    patch: np.ndarray,
    box: Sequence[float] | np.ndarray,
    image_size: tuple[int, int],
    threshold: float = 0.5,
) -> tuple[np.ndarray, tuple[int, int]]:
    """The mask of one patch over ``box`` in an image of ``image_size`` (module doc's rule).

    Args:
        patch: float ``(M, M)`` probabilities over the box (row = y).
        box: ``(x1, y1, x2, y2)`` float, in the image's px (may reach outside it).
        image_size: ``(height, width)`` of the image.
        threshold: a pixel is in the mask when the sampled value is ``>= threshold``.

    Returns:
        ``(local, (x0, y0))``: bool ``(h, w)`` mask of the image pixels
        ``[x0, x0 + w) x [y0, y0 + h)`` whose centres lie in the box (possibly ``h`` or
        ``w`` = 0), and the top-left pixel of that window. Every pixel outside it is 0.

    Raises:
        ValueError: a patch that is not square 2-D or holds NaN/inf, a box that is not 4
            finite numbers, a bad ``image_size`` or a non-finite threshold.
    """
    patch, box = _check_patch_box(patch, box, threshold)
    height, width = _check_image_size(image_size)
    x1, y1, x2, y2 = (float(v) for v in box)
    xa, xb = _pixel_span(x1, x2, width)
    ya, yb = _pixel_span(y1, y2, height)
    local = np.zeros((yb - ya, xb - xa), dtype=bool)
    if local.size == 0:
        return local, (xa, ya)
    m = patch.shape[0]
    wx_t = _weights(xa, xb - xa, x1, x2, m).T  # (M, w)
    rows_right = patch @ wx_t  # (M, w)
    for start in range(ya, yb, _ROW_BLOCK):
        stop = min(start + _ROW_BLOCK, yb)
        wy = _weights(start, stop - start, y1, y2, m)
        local[start - ya : stop - ya] = (wy @ rows_right) >= threshold
    return local, (xa, ya)


def window_runs(local: np.ndarray, origin: tuple[int, int], image_size: tuple[int, int]) -> list:
    """Uncompressed COCO run lengths (column-major, starting with a run of 0s) of an
    ``image_size`` mask that is 0 except the bool window ``local`` at ``origin = (x0, y0)``.

    Only the window is read: runs of 1s are found per column of the window (padded with a 0
    above and below), mapped to flat column-major positions ``u * H + v`` and joined where a
    run ending at the bottom of a column meets one starting at the top of the next.
    """
    height, width = _check_image_size(image_size)
    local = np.asarray(local, dtype=bool)
    x0, y0 = (int(v) for v in origin)
    h, w = local.shape
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        raise ValueError(f"window {w}x{h} at {(x0, y0)} does not fit an image of {(height, width)}")
    total = height * width
    padded = np.zeros((w, h + 2), np.int8)
    padded[:, 1:-1] = local.T  # one row per column of the window, column-major order
    change = np.diff(padded, axis=1)  # (w, h + 1): +1 at run starts, -1 after run ends
    sc, sr = np.nonzero(change == 1)
    ec, er = np.nonzero(change == -1)
    starts = (x0 + sc).astype(np.int64) * height + y0 + sr
    ends = (x0 + ec).astype(np.int64) * height + y0 + er
    if starts.size == 0:
        return [total]
    # a run reaching the bottom of a column and one from the top of the next are one run
    join = ends[:-1] == starts[1:]
    starts = np.concatenate([starts[:1], starts[1:][~join]])
    ends = np.concatenate([ends[:-1][~join], ends[-1:]])
    bounds = np.empty(2 * starts.size + 2, np.int64)
    bounds[0], bounds[-1] = 0, total
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    runs = np.diff(bounds).tolist()
    if runs[-1] == 0:  # the mask ends with 1s: no closing run of 0s (as pycocotools encodes)
        runs.pop()
    return runs


def _compress(runs_list: list[list], image_size: tuple[int, int]) -> list[dict]:
    height, width = image_size
    objs = [{"size": [height, width], "counts": runs} for runs in runs_list]
    rles = mask_util.frPyObjects(objs, height, width)
    return [{"size": [height, width], "counts": r["counts"].decode("ascii")} for r in rles]


def patch_to_rle(
    patch: np.ndarray,
    box: Sequence[float] | np.ndarray,
    image_size: tuple[int, int],
    threshold: float = 0.5,
) -> dict:
    """COCO compressed RLE ``{"size": [H, W], "counts": str}`` of ``paste_patch``'s mask
    (what ``pycocotools.mask.encode`` gives for the full mask, counts decoded to str),
    built from the box-sized window only."""
    size = _check_image_size(image_size)
    local, origin = paste_patch(patch, box, size, threshold)
    return _compress([window_runs(local, origin, size)], size)[0]


def patches_to_rle(
    patches: np.ndarray,
    boxes: np.ndarray,
    image_size: tuple[int, int],
    threshold: float = 0.5,
) -> list[dict]:
    """``patch_to_rle`` of every row: ``patches`` float ``(N, M, M)``, ``boxes`` float
    ``(N, 4)`` in the image's px; a list of N RLE dicts (empty for N = 0)."""
    patches = np.asarray(patches)
    boxes = np.asarray(boxes)
    if patches.ndim != 3 or boxes.ndim != 2 or boxes.shape[1:] != (4,):
        raise ValueError(
            f"expected patches (N, M, M) and boxes (N, 4), got {patches.shape}, {boxes.shape}"
        )
    if patches.shape[0] != boxes.shape[0]:
        raise ValueError(f"{patches.shape[0]} patches for {boxes.shape[0]} boxes")
    size = _check_image_size(image_size)
    runs = []
    for patch, box in zip(patches, boxes, strict=True):
        local, origin = paste_patch(patch, box, size, threshold)
        runs.append(window_runs(local, origin, size))
    return _compress(runs, size) if runs else []
