"""WholeImageSampler: whole-image samples, scales, valid ranges, aspect-ratio grouping, the
padded pixels, and the joint with the loader, the mapper and the trainer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from engine_fakes import SLIM_MODEL_OPTS, restore_loggers, unregister, write_coco_dataset

from sniper.config import setup_cfg
from sniper.data.build import TrainChipLoader, build_chip_sampler, build_train_loader
from sniper.data.chip_mapper import ChipMapper
from sniper.data.whole_image_sampler import WholeImageSampler, aspect_bucket, padded_pixels
from sniper.engine.preflight import check_model_names
from sniper.engine.trainer import SniperTrainer

# (h, w): landscape L or portrait P (square counts as portrait, as in detectron2)
SIZES = [(100, 200), (200, 100), (150, 150), (120, 300), (300, 120), (90, 160), (160, 90)]
ORIENT = ["L", "P", "P", "L", "P", "L", "P"]


def make_records(tmp_path, sizes=SIZES):
    records = []
    for i, (h, w) in enumerate(sizes):
        img = np.zeros((h, w, 3), np.uint8)
        img[10:30, 20:50] = 255
        path = str(tmp_path / f"{i}.png")
        cv2.imwrite(path, img)
        records.append(
            {
                "file_name": path,
                "height": h,
                "width": w,
                "boxes": np.array([[20, 10, 50, 30], [5, 40, 85, 85]], np.float32),
                "classes": np.array([0, 1], np.int64),
            }
        )
    return records


def _image_order(seed: int, epoch: int, n: int) -> list[int]:
    """The epoch's image order of the chip sampler (one sample per image: no chip shuffle
    changes it, but the per-image permutation of one chip still draws from the stream)."""
    rng = np.random.default_rng([seed, epoch, 3])
    order = []
    for i in rng.permutation(n):
        rng.permutation(1)
        order.append(int(i))
    return order


def test_orientation_rule():
    assert [aspect_bucket(h, w) for h, w in SIZES] == [0 if o == "L" else 1 for o in ORIENT]


def test_one_whole_image_per_image_at_its_scale(tmp_path):
    records = make_records(tmp_path)
    sampler = WholeImageSampler(records, [[100, 250]], [[-1, -1]], flip=False, seed=3)
    chips = sampler.epoch_chips(0)
    assert [c.image_index for c in chips] == list(range(len(SIZES)))
    for c, (h, w) in zip(chips, SIZES, strict=True):
        f = min(100 / min(h, w), 250 / max(h, w))
        assert c.factor == pytest.approx(f)
        # canvas sides are truncated (chipping.scales.scaled_length, as the original SNIPER)
        ch, cw = int(h * f + 1e-9), int(w * f + 1e-9)
        assert c.canvas_box == (0, 0, cw, ch)
        assert c.pad_size == (ch, cw) == c.padded_shape
        np.testing.assert_allclose(c.boxes, records[0]["boxes"] * f, rtol=1e-5)
        assert c.ignore_boxes.shape == (0, 4) and not c.negative


def test_mapper_gives_the_resized_image_unpadded(tmp_path):
    records = make_records(tmp_path)
    sampler = WholeImageSampler(records, [2.0], [[-1, -1]], flip=False)
    spec = sampler.epoch_chips(0)[3]  # 120 x 300 -> 240 x 600
    out, failures = ChipMapper("RGB").map_batch([spec])
    assert failures == []
    image, target = out[0]
    assert tuple(image.shape) == (3, 240, 600)
    expected = cv2.resize(
        cv2.imread(records[3]["file_name"])[:, :, ::-1], (600, 240), interpolation=cv2.INTER_LINEAR
    )
    assert np.abs(image.permute(1, 2, 0).numpy().astype(int) - expected).max() <= 2
    np.testing.assert_allclose(target["boxes"].numpy(), records[3]["boxes"] * 2.0, rtol=1e-6)


def test_scales_drawn_per_image_and_ranges_make_ignore_boxes(tmp_path):
    records = make_records(tmp_path)
    # scale 0: 1x with boxes < 40 px valid; scale 1: 0.5x with boxes >= 40 px valid
    sampler = WholeImageSampler(records, [1.0, 0.5], [[-1, 40], [40, -1]], flip=False)
    seen = set()
    for epoch in range(6):
        for c in sampler.epoch_chips(epoch):
            seen.add(c.scale_index)
            assert c.factor == [1.0, 0.5][c.scale_index]
            box = records[c.image_index]["boxes"]
            small, large = box[0] * c.factor, box[1] * c.factor  # 30 and 80 px wide
            valid, ignore = (small, large) if c.scale_index == 0 else (large, small)
            np.testing.assert_allclose(c.boxes, [valid], rtol=1e-5)
            np.testing.assert_allclose(c.ignore_boxes, [ignore], rtol=1e-5)
    assert seen == {0, 1}


def test_aspect_grouping_batches_exactly(tmp_path):
    records = make_records(tmp_path)
    for grouping in (True, False):
        sampler = WholeImageSampler(records, [1.0], [[-1, -1]], aspect_grouping=grouping, seed=5)
        for epoch in range(3):
            order = _image_order(5, epoch, len(SIZES))
            if grouping:
                expected, buckets = [], {"L": [], "P": []}
                for i in order:
                    buckets[ORIENT[i]].append(i)
                    if len(buckets[ORIENT[i]]) == 2:
                        expected.append(buckets[ORIENT[i]])
                        buckets[ORIENT[i]] = []
                expected += [b for b in buckets.values() if b]
            else:
                expected = [order[k : k + 2] for k in range(0, len(order), 2)]
            got = [[c.image_index for c in b] for b in sampler.epoch_batches(epoch, 2)]
            assert got == expected, (grouping, epoch)
            if grouping:
                assert all(len({ORIENT[i] for i in b}) == 1 for b in got)
            dropped = [
                [c.image_index for c in b] for b in sampler.epoch_batches(epoch, 2, 0, 1, True)
            ]
            assert dropped == [b for b in expected if len(b) == 2]


def test_grouping_saves_padding_and_ranks_share_the_epoch(tmp_path):
    records = make_records(tmp_path)
    kw = dict(scales=[1.0], valid_ranges=[[-1, -1]], seed=0)
    grouped = WholeImageSampler(records, aspect_grouping=True, **kw)
    mixed = WholeImageSampler(records, aspect_grouping=False, **kw)
    real = sum(h * w for h, w in SIZES)
    for epoch in range(4):
        g, m = grouped.epoch_batches(epoch, 2), mixed.epoch_batches(epoch, 2)
        assert padded_pixels(g) <= padded_pixels(m)
        assert padded_pixels(g, 1) >= real
        shards = [grouped.epoch_batches(epoch, 2, r, 2) for r in range(2)]
        union = sorted(c.image_index for s in shards for b in s for c in b)
        assert set(union) == set(range(len(SIZES))) and len(shards[0]) == len(shards[1])
    # summed over epochs the grouping pads less (mixed batches of L and P pad to a square)
    total = [sum(padded_pixels(s.epoch_batches(e, 2)) for e in range(8)) for s in (grouped, mixed)]
    assert total[0] < total[1]


def test_padded_pixels_by_hand(tmp_path):
    records = make_records(tmp_path, [(100, 200), (200, 100), (50, 60)])
    chips = WholeImageSampler(records, [1.0], [[-1, -1]], flip=False).epoch_chips(0)
    # [(100,200),(200,100)] pads to 224 x 224 (x2); [(50,60)] to 64 x 64
    assert padded_pixels([chips[:2], chips[2:]]) == 2 * 224 * 224 + 64 * 64
    assert padded_pixels([chips[:2]], 1) == 2 * 200 * 200
    with pytest.raises(ValueError, match="size_divisible"):
        padded_pixels([chips], 0)


def test_config_selects_the_sampler_and_unknown_names_are_refused(tmp_path):
    name = f"whole_{tmp_path.name}"
    write_coco_dataset(tmp_path, name, [(100, 160), (160, 100)], {0: [([5, 5, 40, 30], 0)]})
    try:
        opts = ["DATASETS.TRAIN", f"('{name}',)", "SNIPER.TRAIN_SCALES", "[1.0]"]
        opts += ["SNIPER.VALID_RANGES", "[[-1, -1]]", "DATALOADER.NUM_WORKERS", "0"]
        opts += ["SNIPER.NEG_MIN_PROPOSALS", "[1]"]
        cfg = setup_cfg("", [*opts, "DATALOADER.SAMPLER_TRAIN", "WholeImageSampler"])
        from sniper.data.build import get_records

        sampler = build_chip_sampler(cfg, get_records(cfg.DATASETS.TRAIN))
        assert type(sampler) is WholeImageSampler and sampler.aspect_grouping
        bad = setup_cfg("", [*opts, "DATALOADER.SAMPLER_TRAIN", "Whole"])
        with pytest.raises(ValueError, match=r"DATALOADER.SAMPLER_TRAIN = 'Whole': unknown"):
            check_model_names(bad)
    finally:
        unregister(name)


def test_trainer_on_whole_images_of_mixed_shapes(tmp_path):
    """The joint: config -> loader -> mapper -> model (batches padded by the model)."""
    name = f"whole_train_{tmp_path.name}"
    sizes = [(96, 160), (160, 96), (96, 128), (128, 96)]
    gt = {i: [([10, 12, 30, 24], 0), ([40, 30, 40, 50], 1)] for i in range(4)}
    write_coco_dataset(tmp_path / "data", name, sizes, gt)
    opts = [*SLIM_MODEL_OPTS, "MODEL.NUM_CLASSES", 2, "MODEL.BACKBONE.NORM", "FrozenBN"]
    opts += ["DATALOADER.SAMPLER_TRAIN", "WholeImageSampler", "SNIPER.TRAIN_SCALES", "[1.0]"]
    opts += ["SNIPER.VALID_RANGES", "[[-1, -1]]", "DATALOADER.NUM_WORKERS", 0]
    opts += ["SNIPER.NEG_MIN_PROPOSALS", "[1]"]
    opts += ["SOLVER.IMS_PER_BATCH", 2, "SOLVER.MAX_ITER", 2, "SOLVER.STEPS", "(1,)"]
    opts += ["SOLVER.WARMUP_ITERS", 0, "OUTPUT_DIR", tmp_path / "run", "DATASETS.TRAIN"]
    opts += [f"('{name}',)", "DATASETS.TEST", "()"]
    try:
        with restore_loggers():
            cfg = setup_cfg("", [str(o) for o in opts])
            loader = build_train_loader(cfg)
            assert isinstance(loader, TrainChipLoader)
            batch = next(iter(loader))
            shapes = {tuple(img.shape[1:]) for img, _ in batch}
            assert len({aspect_bucket(h, w) for h, w in shapes}) == 1  # one orientation
            assert shapes <= set(sizes)
            torch.set_num_threads(1)
            trainer = SniperTrainer(cfg)
            trainer.train()
            assert trainer.iter == 1
    finally:
        unregister(name)
