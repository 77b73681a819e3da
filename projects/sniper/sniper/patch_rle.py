"""COCO RLE of a binary mask given as a small patch placed in a larger image.

``pycocotools.mask.encode`` needs the full ``(H, W)`` image-sized array of every instance
and walks all its ``H * W`` pixels. An instance known as a box-sized patch can be encoded
from the patch alone: COCO RLE run lengths count pixels in column-major (Fortran) order of
the full image, so the runs follow from the global column-major indices of the patch's set
pixels. ``patch_to_rle`` computes them in ``O(patch pixels)`` memory and time and hands the
uncompressed counts to ``pycocotools.mask.frPyObjects`` for the standard compressed form;
the result is byte-identical to ``mask.encode`` of the pasted full-image mask.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["patch_to_rle"]


def patch_to_rle(patch: np.ndarray, x: int, y: int, height: int, width: int) -> dict:
    """Compressed COCO RLE of ``patch`` pasted with its top-left pixel at ``(x, y)``.

    Args:
        patch: 2-D ``(h, w)`` array, any dtype; non-zero pixels are the mask.
        x, y: column and row (image px, integers) of the patch's top-left pixel; the whole
            patch must lie inside the image: ``0 <= x``, ``x + w <= width``, same for ``y``.
        height, width: image size in px (positive integers).

    Returns:
        ``{"size": [height, width], "counts": str}``, the json-ready compressed RLE (the
        ``counts`` bytes of ``pycocotools.mask.encode`` decoded as ASCII); decode it with
        ``pycocotools.mask.decode`` after ``counts.encode()``, or let ``COCO.annToMask`` do it.
    """
    patch = np.asarray(patch)
    if patch.ndim != 2:
        raise ValueError(f"patch must be 2-D (h, w), got shape {patch.shape}")
    for name, value in (("x", x), ("y", y), ("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an integer, got {value!r}")
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    h, w = patch.shape
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(
            f"patch of shape {patch.shape} at (x={x}, y={y}) does not fit in a "
            f"{height}x{width} (HxW) image"
        )
    # column-major order: patch.T rows are image columns; index = column * height + row
    cols, rows = np.nonzero(patch.T)
    index = (cols.astype(np.int64) + x) * height + (rows.astype(np.int64) + y)
    total = height * width
    if index.size == 0:
        counts = [total]
    else:
        breaks = np.flatnonzero(np.diff(index) != 1) + 1
        starts = index[np.concatenate(([0], breaks))]
        ends = index[np.concatenate((breaks - 1, [index.size - 1]))] + 1  # exclusive
        # alternate zero runs and one runs, starting with (possibly empty) zeros
        edges = np.empty(2 * starts.size + 2, dtype=np.int64)
        edges[0], edges[-1] = 0, total
        edges[1:-1:2], edges[2:-1:2] = starts, ends
        counts = np.diff(edges).tolist()
        if counts[-1] == 0:  # mask.encode ends on the last run of ones, no empty zero run
            counts.pop()
    rle = mask_utils.frPyObjects({"counts": counts, "size": [height, width]}, height, width)
    return {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")}
