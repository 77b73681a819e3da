"""Chip sampler, mapper and loader: round trips, assignment rules, seeds, sharding, resume."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from sniper.data import chip_mapper as mapper_module
from sniper.data.build import TrainChipLoader
from sniper.data.chip_mapper import ChipMapper
from sniper.data.chip_sampler import ChipSampler
from sniper.data.proposals import load_proposals, save_proposals
from sniper.image_ops import cut_chip
from sniper.structures import chip_to_image, image_to_chip

SCALES = [2.0, 1.0, [256, 256]]
RANGES = [[-1, 40], [24, 100], [80, -1]]


def make_records(tmp_path, n=6, seed=0):
    """Images with white boxes on black, sizes 8-200 px, plus one crowd box each."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        h, w = int(rng.integers(300, 500)), int(rng.integers(300, 600))
        img = np.zeros((h, w, 3), np.uint8)
        boxes = []
        for _ in range(int(rng.integers(3, 12))):
            s = float(np.exp(rng.uniform(np.log(8), np.log(200))))
            x, y = rng.uniform(0, w - s), rng.uniform(0, h - s)
            boxes.append([x, y, x + s, y + s])
        boxes = np.array(boxes, np.float32)
        for b in boxes.astype(int):
            img[b[1] : b[3], b[0] : b[2]] = 255
        path = str(tmp_path / f"{i}.png")
        cv2.imwrite(path, img)
        records.append(
            dict(
                file_name=path,
                image_id=i + 1,
                height=h,
                width=w,
                boxes=boxes,
                classes=rng.integers(0, 3, len(boxes)).astype(np.int64),
                crowd_boxes=np.array([[0, 0, 20, 20]], np.float32),
            )
        )
    return records


def sampler(records, **kw):
    return ChipSampler(records, SCALES, RANGES, chip_size=256, stride=16, **kw)


def test_valid_boxes_inside_chip_in_range_and_round_trip(tmp_path):
    records = make_records(tmp_path)
    for chip in sampler(records).epoch_chips(0):
        rec = records[chip.image_index]
        assert chip.image_size == (rec["height"], rec["width"])
        assert (chip.boxes[:, :2] >= 0).all()
        assert (chip.boxes[:, 2] <= chip.width).all() and (chip.boxes[:, 3] <= chip.height).all()
        back = chip.chip_to_image(chip.boxes)
        size = np.sqrt((back[:, 2] - back[:, 0]) * (back[:, 3] - back[:, 1]))
        lo, hi = chip.valid_range
        # Sizes of the clipped boxes: at most the original size, which is in range.
        assert (size < hi + 1e-3).all()
        # Round trip of the GT boxes fully inside the chip: within a pixel of where they were.
        ib = chip.image_box
        inside = (
            (rec["boxes"][:, 0] >= ib[0])
            & (rec["boxes"][:, 2] <= ib[2])
            & (rec["boxes"][:, 1] >= ib[1])
            & (rec["boxes"][:, 3] <= ib[3])
        )
        full = rec["boxes"][inside]
        rt = chip_to_image(
            image_to_chip(full, chip.canvas_box, chip.factor), chip.canvas_box, chip.factor
        )
        np.testing.assert_allclose(rt, full, atol=1e-3)
        gsize = np.sqrt((full[:, 2] - full[:, 0]) * (full[:, 3] - full[:, 1]))
        expected_valid = full[(gsize >= lo) & (gsize < hi)]
        got = {tuple(np.round(b, 2)) for b in back}
        for b in expected_valid:
            assert tuple(np.round(b, 2)) in got


def test_ignore_boxes_are_exactly_the_other_overlapping_gt(tmp_path):
    records = make_records(tmp_path)
    for chip in sampler(records, min_box_size=0.0).epoch_chips(0):
        rec = records[chip.image_index]
        allb = np.concatenate([rec["boxes"], rec["crowd_boxes"]]).astype(np.float64)
        ib = chip.image_box
        iw = np.minimum(allb[:, 2], ib[2]) - np.maximum(allb[:, 0], ib[0])
        ih = np.minimum(allb[:, 3], ib[3]) - np.maximum(allb[:, 1], ib[1])
        overlapping = int(((iw > 0) & (ih > 0)).sum())
        assert len(chip.boxes) + len(chip.ignore_boxes) == overlapping
        lo, hi = chip.valid_range
        for b in chip.ignore_boxes:  # an ignore box is crowd, out of range, or mostly outside
            assert b[0] >= 0 and b[2] <= chip.width


def test_same_seed_same_chips_and_epochs_differ_with_jitter(tmp_path):
    records = make_records(tmp_path)
    a = sampler(records, jitter=True, seed=3).epoch_batches(2, 4)
    b = sampler(records, jitter=True, seed=3).epoch_batches(2, 4)
    key = [[(c.image_index, c.canvas_box, c.flip) for c in batch] for batch in a]
    assert key == [[(c.image_index, c.canvas_box, c.flip) for c in batch] for batch in b]
    c = sampler(records, jitter=True, seed=3).epoch_batches(3, 4)
    assert key != [[(x.image_index, x.canvas_box, x.flip) for x in batch] for batch in c]


def test_ranks_share_an_epoch_without_overlap(tmp_path):
    records = make_records(tmp_path, n=8)
    s = sampler(records)
    everything = [c.chip_id for batch in s.epoch_batches(0, 2) for c in batch]
    parts = [s.epoch_batches(0, 2, rank=r, world_size=3) for r in range(3)]
    assert len({len(p) for p in parts}) == 1  # equal batch counts on every rank
    seen = [c.chip_id for p in parts for batch in p for c in batch]
    assert set(seen) == set(everything)
    n_batches = -(-len(everything) // 2)
    assert len(seen) - len(everything) <= 2 * (3 * len(parts[0]) - n_batches)


def test_chips_of_an_image_are_consecutive(tmp_path):
    records = make_records(tmp_path)
    order = [c.image_index for batch in sampler(records).epoch_batches(0, 3) for c in batch]
    runs = [k for k in range(1, len(order)) if order[k] != order[k - 1]]
    assert len(runs) == len(set(order)) - 1


def test_mapper_crops_resizes_and_flips_consistently(tmp_path):
    records = make_records(tmp_path, n=3)
    m = ChipMapper(input_format="RGB", pad_value=(1, 2, 3))
    for chip in sampler(records).epoch_chips(0):
        for flip in (False, True):
            spec = chip.__class__(**{**chip.__dict__, "flip": flip})
            image, target = m([spec])[0]
            assert image.shape == (3, 256, 256) and image.dtype.__str__() == "torch.uint8"
            img = image.permute(1, 2, 0).numpy()
            # Padding outside the chip's extent.
            if spec.width < 256:
                assert (img[:, spec.width :] == [1, 2, 3]).all()
            for b in target["boxes"].numpy():
                cx, cy = int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)
                if b[2] - b[0] >= 6 and b[3] - b[1] >= 6:  # centre of a white GT box is white
                    assert img[cy, cx].min() > 200, (b, spec.flip)
            assert target["labels"].min().item() >= 1 if len(target["labels"]) else True
            np.testing.assert_allclose(
                target["valid_range"].numpy(), np.array(spec.valid_range) * spec.factor, rtol=1e-6
            )


def test_cut_chip_matches_full_resize():
    rng = np.random.default_rng(0)
    image = (rng.random((90, 120, 3)) * 255).astype(np.uint8)
    image = cv2.GaussianBlur(image, (7, 7), 2)
    for factor in (0.5, 1.0, 2.0):
        full = cv2.resize(
            image,
            (round(120 * factor), round(90 * factor)),
            interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR,
        )
        box = (8, 4, 8 + 40, 4 + 30)
        chip = cut_chip(image, box, factor)
        ref = full[box[1] : box[3], box[0] : box[2]]
        assert np.abs(chip.astype(int) - ref.astype(int)).max() <= 2


def test_each_image_decoded_once_per_batch(tmp_path, monkeypatch):
    records = make_records(tmp_path, n=2)
    calls = []
    real = mapper_module.read_image
    monkeypatch.setattr(mapper_module, "read_image", lambda p, f: calls.append(p) or real(p, f))
    chips = sampler(records).epoch_chips(0)
    ChipMapper()(chips)
    assert sorted(calls) == sorted({c.file_name for c in chips})


def test_corrupt_image_is_skipped_with_a_warning(tmp_path, caplog):
    records = make_records(tmp_path, n=2)
    with open(records[0]["file_name"], "wb") as f:
        f.write(b"not an image")
    chips = sampler(records).epoch_chips(0)
    with caplog.at_level(logging.WARNING, logger="sniper.data"):
        out = ChipMapper()(chips)
    assert len(out) == sum(c.image_index == 1 for c in chips)
    assert "0.png" in caplog.text and "unreadable" in caplog.text


def test_loader_resumes_at_the_exact_batch(tmp_path):
    records = make_records(tmp_path)
    s = sampler(records)
    ref = TrainChipLoader(s, ChipMapper(), 3)
    seq = [next(ref) for _ in range(12)]
    state_at = 5
    first = TrainChipLoader(s, ChipMapper(), 3)
    for _ in range(state_at):
        next(first)
    resumed = TrainChipLoader(s, ChipMapper(), 3)
    resumed.load_state_dict(first.state_dict())
    for k in range(state_at, 12):
        got = next(resumed)
        assert len(got) == len(seq[k])
        for (ia, ta), (ib, tb) in zip(got, seq[k], strict=True):
            assert ia.equal(ib) and ta["boxes"].equal(tb["boxes"])
    assert ref.epoch >= 1  # the sequence crossed an epoch boundary


def test_negative_chips_from_a_proposals_file(tmp_path):
    records = make_records(tmp_path)
    rng = np.random.default_rng(1)
    props = []
    for r in records:  # a dense cluster of proposals away from... anywhere in the image
        c = rng.uniform(0, [r["width"] - 40, r["height"] - 40], (40, 2))
        props.append(np.concatenate([c, c + 30], axis=1).astype(np.float32))
    path = str(tmp_path / "proposals.npz")
    save_proposals(path, [r["image_id"] for r in records], props, [np.ones(len(p)) for p in props])
    loaded = load_proposals(path, records)
    for a, b in zip(loaded, props, strict=True):
        np.testing.assert_allclose(a, b)
    s = sampler(records, proposals=loaded, neg_per_image=1, neg_min_proposals=[2, 2, 2])
    chips = s.epoch_chips(0)
    negs = [c for c in chips if c.negative]
    assert negs
    per_image = np.bincount([c.image_index for c in negs])
    assert per_image.max() <= 1


def test_bad_proposals_file(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, foo=np.zeros(3))
    with pytest.raises(ValueError, match="not a proposals file"):
        load_proposals(str(bad), [])
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_proposals(str(tmp_path / "missing.npz"), [])


def test_negative_seed_draws_a_logged_random_chip_seed(tmp_path, caplog) -> None:
    """SEED < 0 (config comment: "random, logged"): chips get a drawn seed, not seed 0."""
    from sniper.config import setup_cfg
    from sniper.data.build import build_chip_sampler, resolve_seed

    assert resolve_seed(7) == 7 and resolve_seed(0) == 0
    with caplog.at_level(logging.INFO, logger="sniper.data"):
        drawn = {resolve_seed(-1) for _ in range(4)}
    assert len(drawn) > 1 and all(0 <= s < 2**31 for s in drawn)
    assert "random seed" in caplog.text
    records = make_records(tmp_path, n=2)
    assert build_chip_sampler(setup_cfg("", ["SEED", "5"]), records).seed == 5
    seeds = {build_chip_sampler(setup_cfg("", ["SEED", "-1"]), records).seed for _ in range(4)}
    assert len(seeds) > 1
