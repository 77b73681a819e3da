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

**RLE.** ``patch_to_rle`` encodes the pasted box-sized window with the project's one
window encoder, ``sniper.patch_rle.patch_to_rle`` (column-major run lengths from the
window's set pixels, compressed by pycocotools ``frPyObjects``; the rest of the image is 0),
so no ``(H, W)`` array is made, whatever the image size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sniper.patch_rle import patch_to_rle as window_to_rle

__all__ = ["paste_patch", "patch_to_rle", "patches_to_rle"]

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
    w[rows, c0] = 1.0 - a
    w[rows, c1] += a  # one entry per row in each assignment; c1 == c0 only where a == 0
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


def patch_to_rle(
    patch: np.ndarray,
    box: Sequence[float] | np.ndarray,
    image_size: tuple[int, int],
    threshold: float = 0.5,
) -> dict:
    """COCO compressed RLE ``{"size": [H, W], "counts": str}`` of ``paste_patch``'s mask
    (what ``pycocotools.mask.encode`` gives for the full mask, counts decoded to str),
    built from the box-sized window only."""
    height, width = _check_image_size(image_size)
    local, (x0, y0) = paste_patch(patch, box, (height, width), threshold)
    return window_to_rle(local, x0, y0, height, width)


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
    return [
        patch_to_rle(patch, box, size, threshold) for patch, box in zip(patches, boxes, strict=True)
    ]
