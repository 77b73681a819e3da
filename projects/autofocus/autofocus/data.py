"""Training chips for AutoFocus: sniper's chips plus the boxes FocusPixel labels need.

`FocusChipMapper` is sniper's `ChipMapper` whose chip targets also hold, in chip px:

* `focus_boxes` float32 `(F, 4)`: *every* GT box of the image overlapping the chip (valid for
  the chip's scale or not), clipped to the chip, flipped with the chip;
* `focus_sizes` float32 `(F,)`: their sizes `sqrt(w * h)` before clipping (the object's size
  at this scale);
* `focus_ignore_boxes` float32 `(G, 4)`: the crowd regions overlapping the chip, clipped.

`autofocus.targets` explains why (SNIPER's `ignore_boxes` mix out-of-range GT and crowd).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode

from chipping.scales import box_sizes
from sniper.data.build import TrainChipLoader, build_train_loader, pad_value
from sniper.data.chip_mapper import ChipMapper
from sniper.structures import ChipSpec, flip_boxes

__all__ = ["FocusChipMapper", "build_autofocus_train_loader", "chip_boxes"]


def chip_boxes(boxes_img: np.ndarray, spec: ChipSpec) -> tuple[np.ndarray, np.ndarray]:
    """Image-px boxes seen by chip `spec`: (clipped chip-px boxes (K, 4), sizes (K,)).

    Boxes are mapped with the chip's (canvas box, factor), sized before clipping, clipped to
    the chip's content `[0, width] x [0, height]` and kept when the clipped box has positive
    area; then flipped if the chip is flipped. float32 outputs.
    """
    b = spec.image_to_chip(np.asarray(boxes_img, np.float32).reshape(-1, 4)).astype(np.float64)
    sizes = box_sizes(b)
    b[:, 0::2] = b[:, 0::2].clip(0, spec.width)
    b[:, 1::2] = b[:, 1::2].clip(0, spec.height)
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    out = b[keep].astype(np.float32)
    if spec.flip:
        out = flip_boxes(out, spec.width)
    return np.ascontiguousarray(out, np.float32), sizes[keep].astype(np.float32)


class FocusChipMapper(ChipMapper):
    """`ChipMapper` adding the FocusPixel boxes to each target (module doc).

    Args:
        gt_boxes: per record (indexed by `ChipSpec.image_index`) float `(N_i, 4)` GT boxes
            in image px.
        crowd_boxes: per record float `(M_i, 4)` crowd regions in image px.
        input_format, pad_value, with_masks: as `ChipMapper`.
    """

    def __init__(
        self,
        gt_boxes: Sequence[np.ndarray],
        crowd_boxes: Sequence[np.ndarray],
        input_format: str = "RGB",
        pad_value: Sequence[float] = (124.0, 116.0, 104.0),
        with_masks: bool = False,
    ) -> None:
        super().__init__(input_format, pad_value, with_masks)
        if len(gt_boxes) != len(crowd_boxes):
            raise ValueError(
                f"got {len(gt_boxes)} gt_boxes and {len(crowd_boxes)} crowd_boxes entries"
            )
        self.gt_boxes = [np.asarray(b, np.float32).reshape(-1, 4) for b in gt_boxes]
        self.crowd_boxes = [np.asarray(b, np.float32).reshape(-1, 4) for b in crowd_boxes]

    @classmethod
    def from_records(
        cls,
        records: Sequence[dict],
        input_format: str = "RGB",
        pad_value: Sequence[float] = (124.0, 116.0, 104.0),
        with_masks: bool = False,
    ) -> FocusChipMapper:
        """From dataset records (`boxes`, optional `crowd_boxes`, image px)."""
        crowd = [r.get("crowd_boxes", np.zeros((0, 4), np.float32)) for r in records]
        return cls([r["boxes"] for r in records], crowd, input_format, pad_value, with_masks)

    def map_chip(
        self, image: np.ndarray, spec: ChipSpec, canvas_cache: dict | None = None
    ) -> tuple[torch.Tensor, dict]:
        """`ChipMapper.map_chip` plus `focus_boxes`, `focus_sizes`, `focus_ignore_boxes`."""
        chip, target = super().map_chip(image, spec, canvas_cache)
        if not 0 <= spec.image_index < len(self.gt_boxes):
            raise IndexError(
                f"chip of image {spec.image_index}: the mapper knows {len(self.gt_boxes)} records"
            )
        boxes, sizes = chip_boxes(self.gt_boxes[spec.image_index], spec)
        crowd, _ = chip_boxes(self.crowd_boxes[spec.image_index], spec)
        target["focus_boxes"] = torch.from_numpy(boxes)
        target["focus_sizes"] = torch.from_numpy(sizes)
        target["focus_ignore_boxes"] = torch.from_numpy(crowd)
        return chip, target


def build_autofocus_train_loader(
    cfg: CfgNode, rank: int = 0, world_size: int = 1
) -> TrainChipLoader:
    """sniper's infinite, resumable chip loader (`sniper.data.build.build_train_loader`)
    with a `FocusChipMapper` over the records of DATASETS.TRAIN (with masks when
    MODEL.MASK_ON)."""
    return build_train_loader(
        cfg,
        rank,
        world_size,
        mapper_factory=lambda c, records: FocusChipMapper.from_records(
            records, c.INPUT.FORMAT, pad_value(c), bool(c.MODEL.MASK_ON)
        ),
    )
