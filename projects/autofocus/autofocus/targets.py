"""FocusPixel labels of a training chip (docs/design.md section 5).

The label map has one cell per `stride` chip px: cell `(y, x)` covers the chip pixels
`[x * s, (x + 1) * s) x [y * s, (y + 1) * s)`. A box *overlaps* a cell when their
intersection has positive area (open intervals: a box ending exactly at `x * s` does not
overlap cell `x`). With the size of a box `sqrt(w * h)` (chip px) and `0 <= a < b <= c`:

* positive (1): overlapped by a GT box of size in `(a, b)`;
* ignore (-1): otherwise, overlapped by a GT box of size `<= a` or in `[b, c)`, or by an
  ignore region (crowd annotation);
* negative (0): everything else (GT boxes of size `>= c` do not matter).

Positive wins over ignore.

Which boxes: the FocusPixel head must learn where objects too small for the current scale
are, so *every* GT box of the chip counts by its size, whatever SNIPER's valid range of
the chip's scale says (at the coarse scale the small objects are exactly SNIPER's
out-of-range "ignore boxes"). `autofocus.data.FocusChipMapper` therefore adds to each chip
target `focus_boxes` (all GT boxes clipped to the chip), `focus_sizes` (their sizes before
clipping, i.e. the object's size at this scale) and `focus_ignore_boxes` (crowd regions).
Targets without those keys (e.g. from sniper's plain mapper) fall back to `boxes` sized by
their clipped extent, and `ignore_boxes` -- which then mixes out-of-range GT and crowd --
as ignore regions, the conservative choice when the two cannot be told apart.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sniper.modeling.matching import box_sizes

__all__ = ["focus_pixel_labels", "focus_pixel_labels_batch", "target_focus_boxes"]


def _overlap_masks(boxes: Tensor, map_size: tuple[int, int], stride: float) -> Tensor:
    """bool `(N, H, W)`: box n overlaps cell (y, x) with positive area.

    Args:
        boxes: float `(N, 4)` XYXY chip px.
    """
    height, width = map_size
    device = boxes.device
    lo_x = torch.arange(width, device=device, dtype=torch.float64) * stride
    lo_y = torch.arange(height, device=device, dtype=torch.float64) * stride
    b = boxes.to(torch.float64)
    # positive-area intersection: min(x2, cell_hi) > max(x1, cell_lo), per axis
    cols = torch.minimum(b[:, 2:3], lo_x + stride) > torch.maximum(b[:, 0:1], lo_x)  # (N, W)
    rows = torch.minimum(b[:, 3:4], lo_y + stride) > torch.maximum(b[:, 1:2], lo_y)  # (N, H)
    return rows[:, :, None] & cols[:, None, :]


def focus_pixel_labels(
    boxes: Tensor,
    map_size: tuple[int, int],
    stride: float,
    a: float,
    b: float,
    c: float,
    *,
    sizes: Tensor | None = None,
    ignore_boxes: Tensor | None = None,
) -> Tensor:
    """FocusPixel labels of one chip (module doc gives the rule).

    Args:
        boxes: float `(N, 4)` XYXY GT boxes in chip px, clipped to the chip.
        map_size: `(H, W)` of the label map in cells.
        stride: chip px per cell.
        a, b, c: the size thresholds (chip px), `0 <= a < b <= c`.
        sizes: float `(N,)` size of each box in chip px; default `sqrt(w * h)` of `boxes`.
        ignore_boxes: float `(M, 4)` XYXY chip px regions whose cells are ignore unless
            positive.

    Returns:
        int64 `(H, W)` labels in {-1, 0, 1} on the device of `boxes`.
    """
    if not 0 <= a < b <= c:
        raise ValueError(f"need 0 <= a < b <= c, got a={a}, b={b}, c={c}")
    boxes = boxes.reshape(-1, 4)
    height, width = (int(v) for v in map_size)
    if sizes is None:
        sizes = box_sizes(boxes)
    sizes = sizes.reshape(-1).to(torch.float64)
    if sizes.numel() != boxes.shape[0]:
        raise ValueError(f"got {sizes.numel()} sizes for {boxes.shape[0]} boxes")
    masks = _overlap_masks(boxes, (height, width), float(stride))
    positive_box = (sizes > a) & (sizes < b)
    ignore_box = (sizes <= a) | ((sizes >= b) & (sizes < c))
    positive = masks[positive_box].any(dim=0)
    ignore = masks[ignore_box].any(dim=0)
    if ignore_boxes is not None and ignore_boxes.numel():
        ignore |= _overlap_masks(ignore_boxes.reshape(-1, 4), (height, width), float(stride)).any(0)
    labels = torch.zeros((height, width), dtype=torch.int64, device=boxes.device)
    labels[ignore] = -1
    labels[positive] = 1
    return labels


def target_focus_boxes(target: dict[str, Tensor]) -> tuple[Tensor, Tensor | None, Tensor]:
    """`(boxes (N, 4), sizes (N,) or None, ignore_boxes (M, 4))` of one chip target, chip px.

    Uses `focus_boxes` / `focus_sizes` / `focus_ignore_boxes` when present, else `boxes` and
    `ignore_boxes` (module doc explains the fallback).
    """
    if "focus_boxes" in target:
        ignore = target.get("focus_ignore_boxes")
        return (
            target["focus_boxes"],
            target.get("focus_sizes"),
            ignore if ignore is not None else target["focus_boxes"].new_zeros((0, 4)),
        )
    boxes = target["boxes"]
    ignore = target.get("ignore_boxes")
    return boxes, None, ignore if ignore is not None else boxes.new_zeros((0, 4))


def focus_pixel_labels_batch(
    targets: list[dict[str, Tensor]],
    map_size: tuple[int, int],
    stride: float,
    a: float,
    b: float,
    c: float,
) -> Tensor:
    """int64 `(N, H, W)` labels of a batch of chip targets on one (padded) map size.

    Cells of the padding (beyond a chip's content) hold no box and are negative.
    """
    maps = []
    for target in targets:
        boxes, sizes, ignore = target_focus_boxes(target)
        maps.append(
            focus_pixel_labels(boxes, map_size, stride, a, b, c, sizes=sizes, ignore_boxes=ignore)
        )
    return torch.stack(maps) if maps else torch.zeros((0, *map_size), dtype=torch.int64)
