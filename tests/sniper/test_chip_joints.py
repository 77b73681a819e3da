"""Joints of the chip pipeline, each pinned by exact boxes (issue 9, item 5).

* the mapper flips the image, the valid boxes and the ignore boxes of a flipped chip together;
* ``INPUT.RANDOM_FLIP`` reaches the chips through ``build_train_loader``;
* ``min_inside`` decides valid versus ignore in ``ChipSampler``;
* negative chips are planned against the positive chips of the same epoch.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from sniper.config import setup_cfg
from sniper.data.build import build_train_loader
from sniper.data.catalog import DatasetCatalog
from sniper.data.chip_mapper import ChipMapper
from sniper.data.chip_sampler import ChipSampler
from sniper.structures import ChipSpec


def _noise_image(path, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A random uint8 image written to ``path`` (PNG, lossless); returned as stored (BGR)."""
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return image


# ---------------------------------------------------------------------------------------------
# 1. A flipped chip mirrors its pixels, its valid boxes and its ignore boxes.


def _spec(path, flip: bool) -> ChipSpec:
    return ChipSpec(
        image_index=0,
        file_name=str(path),
        image_size=(40, 60),
        scale_index=0,
        factor=1.0,
        canvas_box=(10, 5, 50, 35),
        chip_size=64,  # 40 x 30 px of content, padded to 64
        boxes=np.array([[2.0, 3.0, 12.0, 13.0], [20.0, 10.0, 40.0, 30.0]], np.float32),
        classes=np.array([0, 2], np.int64),
        ignore_boxes=np.array([[30.0, 0.0, 38.0, 10.0], [0.0, 20.0, 5.0, 30.0]], np.float32),
        valid_range=(0.0, 100.0),
        flip=flip,
    )


def test_flipped_chip_mirrors_pixels_boxes_and_ignore_boxes(tmp_path) -> None:
    path = tmp_path / "noise.png"
    stored = _noise_image(path, 40, 60)
    mapper = ChipMapper(input_format="BGR", pad_value=(1, 2, 3))
    (plain, t_plain), (flipped, t_flip) = mapper([_spec(path, False), _spec(path, True)])
    content = stored[5:35, 10:50]  # factor 1: the chip is the image window
    assert np.array_equal(plain.permute(1, 2, 0).numpy()[:30, :40], content)
    out = flipped.permute(1, 2, 0).numpy()
    assert np.array_equal(out[:30, :40], content[:, ::-1])
    # The padding stays at the right and bottom: the flip is within the chip's 40 px.
    assert (out[30:] == [1, 2, 3]).all() and (out[:, 40:] == [1, 2, 3]).all()
    assert t_plain["boxes"].tolist() == [[2.0, 3.0, 12.0, 13.0], [20.0, 10.0, 40.0, 30.0]]
    assert t_flip["boxes"].tolist() == [[28.0, 3.0, 38.0, 13.0], [0.0, 10.0, 20.0, 30.0]]
    assert t_plain["ignore_boxes"].tolist() == [[30.0, 0.0, 38.0, 10.0], [0.0, 20.0, 5.0, 30.0]]
    assert t_flip["ignore_boxes"].tolist() == [[2.0, 0.0, 10.0, 10.0], [35.0, 20.0, 40.0, 30.0]]
    assert t_flip["labels"].tolist() == t_plain["labels"].tolist() == [1, 3]


# ---------------------------------------------------------------------------------------------
# 2. INPUT.RANDOM_FLIP, read by the train loader builder, flips (or never flips) chips.

FLIP_DATASET = "test_chip_joints_flip"


@pytest.fixture()
def flip_dataset(tmp_path):
    """Four 96 x 128 noise images with three boxes each, registered only meanwhile."""
    records = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        _noise_image(path, 96, 128, seed=i)
        boxes = np.array([[4, 6, 20, 30], [50, 40, 70, 60], [100, 70, 124, 90]], np.float32)
        records.append(
            dict(
                file_name=str(path),
                image_id=i + 1,
                height=96,
                width=128,
                boxes=boxes + i,
                classes=np.array([0, 1, 0], np.int64),
            )
        )
    DatasetCatalog.register(FLIP_DATASET, lambda: records)
    yield records
    DatasetCatalog.remove(FLIP_DATASET)


def _flip_loader(random_flip: str):
    cfg = setup_cfg(
        "",
        [
            "DATASETS.TRAIN",
            f"('{FLIP_DATASET}',)",
            "INPUT.RANDOM_FLIP",
            random_flip,
            "INPUT.FORMAT",
            "BGR",
            "SNIPER.TRAIN_SCALES",
            "[1.0]",
            "SNIPER.VALID_RANGES",
            "[[-1, -1]]",
            "SNIPER.CHIP_SIZE",
            "64",
            "SNIPER.CHIP_STRIDE",
            "32",
            "SNIPER.NEG_CHIPS_PER_IMAGE",
            "0",
            "SNIPER.NEG_MIN_PROPOSALS",
            "[0]",
            "SOLVER.IMS_PER_BATCH",
            "3",
            "DATALOADER.NUM_WORKERS",
            "0",
            "SEED",
            "5",
        ],
    )
    return build_train_loader(cfg), ChipMapper("BGR", list(cfg.MODEL.PIXEL_MEAN)[::-1])


def _epoch_flips(random_flip: str) -> list[bool]:
    """Flip of every chip of epochs 0 and 1, checked against what the loader yields."""
    loader, mapper = _flip_loader(random_flip)
    flips = []
    for epoch in (0, 1):
        for specs in loader.epoch_batches(epoch):
            batch = next(loader)
            assert len(batch) == len(specs)
            for spec, (image, target) in zip(specs, batch, strict=True):
                ((plain, plain_target),) = mapper([dataclasses.replace(spec, flip=False)])
                w, h = spec.width, spec.height
                if spec.flip:
                    mirrored = plain_target["boxes"].numpy().copy()
                    mirrored[:, [0, 2]] = w - mirrored[:, [2, 0]]
                    assert target["boxes"].tolist() == mirrored.tolist()
                    assert image[:, :h, :w].equal(plain[:, :h, :w].flip(-1))
                else:
                    assert target["boxes"].tolist() == plain_target["boxes"].tolist()
                    assert image.equal(plain)
                flips.append(spec.flip)
    assert loader.epoch == 1 and len(flips) > 8
    return flips


def test_random_flip_horizontal_flips_some_chips(flip_dataset) -> None:
    flips = _epoch_flips("horizontal")
    assert any(flips) and not all(flips)


def test_random_flip_none_never_flips(flip_dataset) -> None:
    assert not any(_epoch_flips("none"))


# ---------------------------------------------------------------------------------------------
# 5. min_inside: a box mostly inside a chip is valid there; mostly outside, it is ignore.

# Image 256 x 128 at factor 1 with 128 px chips on a 32 px grid. The greedy cover (ties to the
# lowest grid index) picks [0, 128] for LEFT, [32, 160] for MIDDLE, then [128, 256] for RIGHT.
LEFT = [10.0, 10.0, 40.0, 40.0]
MIDDLE = [100.0, 60.0, 140.0, 90.0]  # 70 % in [0, 128], 30 % in [128, 256]
RIGHT = [200.0, 10.0, 230.0, 40.0]


def _min_inside_chips(tmp_path, min_inside: float) -> dict[tuple, tuple[list, list]]:
    path = tmp_path / "wide.png"
    _noise_image(path, 128, 256)
    record = dict(
        file_name=str(path),
        image_id=1,
        height=128,
        width=256,
        boxes=np.array([LEFT, MIDDLE, RIGHT], np.float32),
        classes=np.array([0, 1, 2], np.int64),
    )
    sampler = ChipSampler(
        [record],
        [1.0],
        [[-1, -1]],
        chip_size=128,
        stride=32,
        min_inside=min_inside,
        min_box_size=0.0,
        flip=False,
    )
    return {
        c.canvas_box: (c.boxes.tolist(), c.ignore_boxes.tolist(), c.classes.tolist())
        for c in sampler.epoch_chips(0)
    }


def test_min_inside_half_splits_valid_and_ignore(tmp_path) -> None:
    chips = _min_inside_chips(tmp_path, 0.5)
    assert chips == {
        # MIDDLE: 28 of 40 px inside -> valid, clipped at the chip edge; chip px = image px.
        (0, 0, 128, 128): ([LEFT, [100.0, 60.0, 128.0, 90.0]], [], [0, 1]),
        # LEFT: 8 of 30 px inside -> ignore; MIDDLE fully inside.
        (32, 0, 160, 128): ([[68.0, 60.0, 108.0, 90.0]], [[0.0, 10.0, 8.0, 40.0]], [1]),
        # MIDDLE: 12 of 40 px inside -> ignore.
        (128, 0, 256, 128): ([[72.0, 10.0, 102.0, 40.0]], [[0.0, 60.0, 12.0, 90.0]], [2]),
    }


def test_min_inside_strict_makes_the_cut_box_ignore(tmp_path) -> None:
    chips = _min_inside_chips(tmp_path, 0.8)
    assert chips[(0, 0, 128, 128)] == ([LEFT], [[100.0, 60.0, 128.0, 90.0]], [0])
    assert chips[(32, 0, 160, 128)] == ([[68.0, 60.0, 108.0, 90.0]], [[0.0, 10.0, 8.0, 40.0]], [1])
    assert chips[(128, 0, 256, 128)] == (
        [[72.0, 10.0, 102.0, 40.0]],
        [[0.0, 60.0, 12.0, 90.0]],
        [2],
    )
    assert len(chips) == 3


# ---------------------------------------------------------------------------------------------
# 6. Negative chips are planned against the positive chips of the same epoch.

GT = [200.0, 200.0, 216.0, 216.0]
CLUSTER = [260.0, 200.0, 276.0, 216.0]  # 20 identical proposals, 60 px right of the GT box


def _negative_sampler(tmp_path) -> ChipSampler:
    path = tmp_path / "big.png"
    _noise_image(path, 512, 512)
    record = dict(
        file_name=str(path),
        image_id=1,
        height=512,
        width=512,
        boxes=np.array([GT], np.float32),
        classes=np.array([0], np.int64),
    )
    proposals = [np.array([CLUSTER] * 20, np.float32)]
    return ChipSampler(
        [record],
        [1.0],
        [[-1, -1]],
        chip_size=128,
        stride=32,
        jitter=True,
        proposals=proposals,
        neg_per_image=5,
        neg_min_proposals=[10],
        seed=7,
    )


def _contains(box, inner) -> bool:
    return box[0] <= inner[0] and box[1] <= inner[1] and box[2] >= inner[2] and box[3] >= inner[3]


def test_negative_chips_use_the_positives_of_their_own_epoch(tmp_path) -> None:
    """The cluster yields a negative chip exactly in the epochs whose (jittered) positive chip
    does not already hold it; both cases occur, so another epoch's positives would differ."""
    sampler = _negative_sampler(tmp_path)
    covered = []
    for epoch in range(12):
        chips = sampler.epoch_chips(epoch)
        positives = [c.image_box.tolist() for c in chips if not c.negative]
        negatives = [c.image_box.tolist() for c in chips if c.negative]
        assert len(positives) == 1 and _contains(positives[0], GT)
        hit = _contains(positives[0], CLUSTER)
        covered.append(hit)
        if hit:
            assert negatives == [], epoch
        else:
            assert len(negatives) == 1 and _contains(negatives[0], CLUSTER), epoch
    assert any(covered) and not all(covered), covered
