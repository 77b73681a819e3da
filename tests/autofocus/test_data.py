"""FocusChipMapper: every GT box of the chip (clipped, sized before clipping, flipped) and the
crowd regions reach the target; the training loader yields them with the real sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_fakes import unregister, write_coco_dataset

from autofocus.config import setup_cfg
from autofocus.data import FocusChipMapper, build_autofocus_train_loader, chip_boxes
from sniper.structures import ChipSpec

GT = np.array([[10, 10, 30, 30], [90, 40, 130, 60], [300, 300, 310, 310]], np.float32)
CROWD = np.array([[0, 80, 60, 120]], np.float32)


def _spec(flip: bool = False) -> ChipSpec:
    # factor 2, canvas window x 40..240, y 40..200 -> image x 20..120, y 20..100
    return ChipSpec(
        image_index=0,
        file_name="unused.jpg",
        image_size=(200, 200),
        scale_index=0,
        factor=2.0,
        canvas_box=(40, 40, 240, 200),
        chip_size=256,
        boxes=np.zeros((0, 4), np.float32),
        classes=np.zeros(0, np.int64),
        ignore_boxes=np.zeros((0, 4), np.float32),
        valid_range=(0.0, 16.0),
        flip=flip,
    )


def test_chip_boxes_clip_after_sizing_and_drop_outside() -> None:
    boxes, sizes = chip_boxes(GT, _spec())
    # box 0: chip [-20, -20, 20, 20] -> clipped [0, 0, 20, 20], size 40 (unclipped)
    # box 1: chip [140, 40, 220, 80] inside; size sqrt(80 * 40); box 2 outside the chip
    assert boxes.tolist() == [[0, 0, 20, 20], [140, 40, 200, 80]]
    assert sizes.tolist() == pytest.approx([40.0, float(np.sqrt(80 * 40))])


def test_mapper_adds_focus_boxes_flipped_with_the_chip() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    mapper = FocusChipMapper([GT], [CROWD])
    _, target = mapper.map_chip(image, _spec())
    assert target["focus_boxes"].tolist() == [[0, 0, 20, 20], [140, 40, 200, 80]]
    assert target["focus_ignore_boxes"].tolist() == [[0, 120, 80, 160]]
    assert target["boxes"].shape == (0, 4)  # SNIPER's own targets are untouched
    _, flipped = mapper.map_chip(image, _spec(flip=True))
    assert flipped["focus_boxes"].tolist() == [[180, 0, 200, 20], [0, 40, 60, 80]]
    assert torch.equal(flipped["focus_sizes"], target["focus_sizes"])
    assert flipped["focus_ignore_boxes"].tolist() == [[120, 120, 200, 160]]
    with pytest.raises(IndexError, match="knows 1 records"):
        mapper.map_chip(image, ChipSpec(**{**_spec().__dict__, "image_index": 3}))


def test_train_loader_batches_carry_focus_boxes(tmp_path) -> None:
    name = f"af_data_{tmp_path.name}"
    boxes = {0: [([10, 12, 30, 24], 0), ([90, 60, 50, 60], 1)], 1: [([20, 100, 12, 14], 1)]}
    write_coco_dataset(tmp_path / "data", name, [(160, 200)] * 2, boxes)
    try:
        cfg = setup_cfg(
            "",
            [
                "DATASETS.TRAIN",
                f"('{name}',)",
                "SNIPER.TRAIN_SCALES",
                "[1.0]",
                "SNIPER.VALID_RANGES",
                "[[-1, 40]]",
                "SNIPER.NEG_MIN_PROPOSALS",
                "[1]",
                "SNIPER.CHIP_SIZE",
                "96",
                "SOLVER.IMS_PER_BATCH",
                "2",
                "DATALOADER.NUM_WORKERS",
                "0",
                "MODEL.NUM_CLASSES",
                "2",
            ],
        )
        batch = next(iter(build_autofocus_train_loader(cfg)))
        assert len(batch) == 2
        for image, target in batch:
            assert image.shape == (3, 96, 96)
            assert {"focus_boxes", "focus_sizes", "focus_ignore_boxes"} <= set(target)
            # the 50x60 box is outside SNIPER's range [0, 40): an ignore box for the detector
            # but a sized focus box
            assert len(target["focus_boxes"]) >= len(target["boxes"])
        sizes = torch.cat([t["focus_sizes"] for _, t in batch])
        assert bool((sizes > 40).any())
    finally:
        unregister(name)


def test_train_loader_gives_masks_with_mask_on(tmp_path) -> None:
    """MODEL.MASK_ON reaches the AutoFocus mapper: every chip target has one mask per valid
    box, beside the focus boxes (synthetic digits, which carry masks)."""
    from sniper.data.registration import register_coco_instances
    from sniper.data.synthetic import SyntheticSplit, build_split

    json_file, image_root = build_split(SyntheticSplit("afm", 1, 256, 7), tmp_path)
    name = f"af_masks_{tmp_path.name}"
    register_coco_instances(name, json_file, image_root)
    try:
        opts = ["DATASETS.TRAIN", f"('{name}',)", "SNIPER.TRAIN_SCALES", "[1.0]"]
        opts += ["SNIPER.VALID_RANGES", "[[-1, -1]]", "SNIPER.NEG_MIN_PROPOSALS", "[1]"]
        opts += ["SNIPER.CHIP_SIZE", "128", "SOLVER.IMS_PER_BATCH", "2"]
        opts += ["DATALOADER.NUM_WORKERS", "0", "MODEL.NUM_CLASSES", "10"]
        batch = next(
            iter(build_autofocus_train_loader(setup_cfg("", [*opts, "MODEL.MASK_ON", "True"])))
        )
        for _, target in batch:
            assert target["masks"].shape == (len(target["boxes"]), 128, 128)
            assert "focus_boxes" in target
        plain = next(iter(build_autofocus_train_loader(setup_cfg("", opts))))
        assert all("masks" not in t for _, t in plain)
    finally:
        unregister(name)
