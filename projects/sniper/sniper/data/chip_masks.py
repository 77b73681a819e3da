"""Instance masks of one chip: COCO polygons / RLE (image px) -> uint8 masks in chip px.

The one rule (docs/design.md section 3, "masks follow the box map"): a mask goes through
the same map as its box, ``chip = image * f - (cx1, cy1)`` (`sniper.structures.
image_to_chip`), then, for a flipped chip, the horizontal flip ``x -> W - x`` of
`sniper.structures.flip_boxes` (``W`` the chip's width before padding). A chip pixel belongs
to the mask when its centre lies inside the mapped shape:

- polygons are mapped point by point and rasterised by pycocotools (``frPyObjects`` +
  ``decode``) at the chip's size, so what lies outside the chip is cut off exactly;
- an RLE is decoded by pycocotools at the image's size (the only full-image array, freed at
  once) and sampled at the image pixel under each chip pixel's centre, ``floor((cx1 + u +
  0.5) / f)`` (nearest neighbour: masks are never blended), only inside the chip's window.

Both give the same chip mask for a shape on the image-pixel grid (a polygon with integer
corners and its RLE) at any factor; elsewhere they differ by the image pixel's
quantisation of the RLE along the edge. Segmentations are the compact forms that
`sniper.data.coco` keeps (`check_segmentation`): a list of flat ``[x, y, ...]`` polygons,
an RLE dict (``counts`` str or list, ``size`` [h, w]) or None (no mask: all zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["check_segmentation", "chip_masks"]


def _check_polygons(segm: list) -> list[list] | None:
    """The polygons of ``segm`` with at least 3 points (None when none has), or ValueError."""
    parts = []
    for j, part in enumerate(segm):
        if type(part) is not list or not all(type(v) in (int, float) for v in part):
            raise ValueError(f"polygon {j} is not a list of numbers")
        if len(part) % 2:
            raise ValueError(f"polygon {j} has an odd number of coordinates ({len(part)})")
        if not np.isfinite(np.asarray(part, np.float64)).all():
            raise ValueError(f"polygon {j} has a NaN or infinite coordinate")
        if len(part) >= 6:
            parts.append(part)
    if len(parts) == len(segm):
        return segm
    return parts or None


def _check_rle(segm: dict, image_size: tuple[int, int]) -> dict:
    """``segm`` itself when it is an RLE of an ``image_size`` image, or ValueError."""
    size, counts = segm.get("size"), segm.get("counts")
    if type(size) is not list or len(size) != 2 or any(type(v) is not int for v in size):
        raise ValueError(f"RLE 'size' must be [height, width], got {size!r}")
    h, w = int(image_size[0]), int(image_size[1])
    if size != [h, w]:
        raise ValueError(f"RLE size {size} does not match the image's [height, width] [{h}, {w}]")
    if isinstance(counts, str):
        if not counts:
            raise ValueError("RLE 'counts' is an empty string")
        return segm
    if type(counts) is not list or not all(type(v) is int and v >= 0 for v in counts):
        raise ValueError("RLE 'counts' must be a string or a list of run lengths (ints >= 0)")
    if sum(counts) != h * w:
        raise ValueError(f"RLE run lengths sum to {sum(counts)}, not height * width = {h * w}")
    return segm


def check_segmentation(segm: Any, image_size: tuple[int, int]) -> list[list] | dict | None:
    """A COCO ``segmentation`` in its compact form, checked (nothing is decoded).

    Args:
        segm: None, a list of flat polygons ``[x1, y1, x2, y2, ...]`` (image px, numbers) or
            an RLE dict with ``size`` ``[height, width]`` and ``counts`` (COCO's compressed
            string or a list of run lengths, column-major).
        image_size: (height, width) of the annotation's image.
    Returns:
        None for no mask (None, ``[]``, or only polygons under 3 points, which have no area
        and which pycocotools would read as boxes); else the polygons with at least 3
        points (``segm`` itself when all have) or the RLE dict itself.
    Raises:
        ValueError: naming the problem (not a list or dict, a polygon that is not a list of
            numbers, of odd length, or with NaN/inf; an RLE whose size is not the image's,
            or whose counts are not a string or run lengths summing to ``height * width``).
    """
    if segm is None or (type(segm) is list and not segm):
        return None
    if type(segm) is list:
        return _check_polygons(segm)
    if type(segm) is dict:
        return _check_rle(segm, image_size)
    raise ValueError(
        f"segmentation must be a list of polygons or an RLE dict, got {type(segm).__name__}"
    )


def _polygon_mask(
    parts: list[list], origin: tuple[int, int], factor: float, size: tuple[int, int], flip: bool
) -> np.ndarray:
    """uint8 ``(h, w)``: polygons in image px mapped by the box map and rasterised."""
    h, w = size
    mapped = []
    for part in parts:
        pts = np.asarray(part, np.float64).reshape(-1, 2) * factor - np.asarray(origin, np.float64)
        if flip:
            pts[:, 0] = w - pts[:, 0]
        mapped.append(pts.ravel().tolist())
    rle = mask_utils.merge(mask_utils.frPyObjects(mapped, h, w))
    return mask_utils.decode(rle)


def _rle_mask(
    rle: dict, origin: tuple[int, int], factor: float, size: tuple[int, int], flip: bool
) -> np.ndarray:
    """uint8 ``(h, w)``: an image-px RLE sampled at the chip pixels' centres."""
    img_h, img_w = rle["size"]
    if type(rle["counts"]) is list:
        rle = mask_utils.frPyObjects(rle, img_h, img_w)
    full = mask_utils.decode(rle)  # (img_h, img_w) uint8, Fortran order
    h, w = size
    rows = np.floor((origin[1] + np.arange(h) + 0.5) / factor).astype(np.int64)
    cols = np.floor((origin[0] + np.arange(w) + 0.5) / factor).astype(np.int64)
    inside_r, inside_c = (rows >= 0) & (rows < img_h), (cols >= 0) & (cols < img_w)
    out = np.zeros((h, w), np.uint8)
    out[np.ix_(inside_r, inside_c)] = full[np.ix_(rows[inside_r], cols[inside_c])]
    return out[:, ::-1] if flip else out


def chip_masks(
    segmentations: Sequence[Any],
    canvas_box: Sequence[int],
    factor: float,
    image_size: tuple[int, int],
    flip: bool = False,
) -> np.ndarray:
    """The masks of one chip, in chip px (the rule: module docstring).

    Args:
        segmentations: K entries in image px, each None, polygons or an RLE
            (`check_segmentation`; checked here again).
        canvas_box: int XYXY ``(cx1, cy1, cx2, cy2)``, the chip's window on the canvas (the
            image resized by ``factor``); the chip is ``cy2 - cy1`` x ``cx2 - cx1`` px.
        factor: the chip's scale factor (> 0).
        image_size: (height, width) of the image, in image px.
        flip: mirror the masks as the chip (``x -> W - x``).
    Returns:
        uint8 ``(K, cy2 - cy1, cx2 - cx1)``, 1 inside the object, C-contiguous.
    Raises:
        ValueError: for a malformed segmentation (naming its index), a non-positive factor
            or an empty window.
    """
    x1, y1, x2, y2 = (int(v) for v in canvas_box)
    if not (np.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"canvas_box must have x2 > x1 and y2 > y1, got {tuple(canvas_box)}")
    size, origin = (y2 - y1, x2 - x1), (x1, y1)
    out = np.zeros((len(segmentations), *size), np.uint8)
    for k, segm in enumerate(segmentations):
        try:
            segm = check_segmentation(segm, image_size)
        except ValueError as e:
            raise ValueError(f"segmentation {k}: {e}") from None
        if type(segm) is list:
            out[k] = _polygon_mask(segm, origin, factor, size, flip)
        elif segm is not None:
            out[k] = _rle_mask(segm, origin, factor, size, flip)
    return out
