"""Masks in the drawings and the demo: `rle_window` against pycocotools' full decode,
`draw_detections` filling and outlining only mask pixels, the demo's results json holding
RLE that pycocotools decodes to the predicted masks, and the AutoFocus drawing."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from autofocus.visualization import draw_autofocus
from sniper import demo
from sniper.rle_window import rle_runs, rle_window
from sniper.visualization_dets import class_color, draw_detections


def _rle(mask: np.ndarray, as_str: bool = True) -> dict:
    enc = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = enc["counts"].decode() if as_str else enc["counts"]
    return {"size": [int(v) for v in enc["size"]], "counts": counts}


def _random_masks(rng: np.random.Generator, h: int, w: int) -> list[np.ndarray]:
    """Blobs, noise, empty, full and long thin runs (large and negative run deltas)."""
    yy, xx = np.mgrid[:h, :w]
    masks = [np.zeros((h, w), np.uint8), np.ones((h, w), np.uint8)]
    for _ in range(6):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1, max(h, w) / 2 + 1)
        masks.append(((xx - cx) ** 2 + (yy - cy) ** 2 < r * r).astype(np.uint8))
    masks.append((rng.random((h, w)) < 0.3).astype(np.uint8))
    stripe = np.zeros((h, w), np.uint8)
    stripe[h // 3, :] = 1
    stripe[:, w - 1] = 1
    masks.append(stripe)
    return masks


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (60, 90), (300, 41)])
def test_rle_window_equals_pycocotools_decode(size):
    h, w = size
    rng = np.random.default_rng(h * 1000 + w)
    for mask in _random_masks(rng, h, w):
        full = mask_utils.decode(_rle(mask, as_str=False))
        runs = rle_runs(_rle(mask))
        assert runs.sum() == h * w and np.array_equal(runs[1::2].sum(), mask.sum())
        for _ in range(5):
            x0, x1 = sorted(rng.integers(0, w + 1, 2))
            y0, y1 = sorted(rng.integers(0, h + 1, 2))
            for rle in (_rle(mask), _rle(mask, as_str=False)):
                got = rle_window(rle, x0, y0, x1, y1)
                assert got.dtype == bool and got.shape == (y1 - y0, x1 - x0)
                np.testing.assert_array_equal(got, full[y0:y1, x0:x1].astype(bool))
        as_list = {"size": [h, w], "counts": _uncompressed(mask)}
        np.testing.assert_array_equal(rle_window(as_list, 0, 0, w, h), mask.astype(bool))


def _uncompressed(mask: np.ndarray) -> list[int]:
    """Run lengths by hand: column-major flat pixels, alternating from 0."""
    flat = mask.T.reshape(-1)
    runs, value, n = [], 0, 0
    for v in flat:
        if v != value:
            runs.append(n)
            value, n = v, 0
        n += 1
    return [*runs, n]


def test_rle_window_rejects_bad_input():
    rle = _rle(np.ones((4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"window \[0, 6\) x \[0, 4\) is not inside the 4x5"):
        rle_window(rle, 0, 0, 6, 4)
    with pytest.raises(ValueError, match="sum to height \\* width = 20, got sum 19"):
        rle_window({"size": [4, 5], "counts": [1, 18]}, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="'size' must be"):
        rle_runs({"counts": "abc"})


def _scene():
    """A gray 80x120 image, one detection whose mask (a disk) lies inside its box."""
    image = np.full((80, 120, 3), 100, np.uint8)
    yy, xx = np.mgrid[:80, :120]
    mask = ((xx - 40) ** 2 + (yy - 40) ** 2 < 15**2).astype(np.uint8)
    boxes = np.array([[20, 20, 60, 60]], np.float32)
    return image, mask, boxes


def test_drawn_mask_changes_only_mask_pixels():
    image, mask, boxes = _scene()
    plain = draw_detections(image, boxes, [0.9], [2])
    drawn = draw_detections(image, boxes, [0.9], [2], masks=[_rle(mask)], mask_alpha=0.5)
    assert np.array_equal(image, np.full_like(image, 100))  # the input is untouched
    changed = (drawn != plain).any(-1)
    inside = mask.astype(bool)
    assert changed.any() and not changed[~inside].any()  # outside the mask: as without it
    box = np.zeros_like(inside)
    box[20:60, 20:60] = True
    below_label = np.arange(80)[:, None] > 20  # the label sits on the box's top edge
    assert not (drawn != image).any(-1)[~box & below_label].any()
    color = np.asarray(class_color(2), np.float64)
    # the outline: mask pixels with a 4-neighbour outside the mask (the traced border)
    core = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))).astype(bool)
    expected = np.round(100 * 0.5 + color * 0.5).astype(np.uint8)
    assert (drawn[core] == expected).all()
    outline = inside & ~core
    assert (drawn[outline] == np.asarray(class_color(2), np.uint8)).all()


def test_masks_below_the_threshold_and_bad_masks():
    image, mask, boxes = _scene()
    faint = draw_detections(image, boxes, [0.1], [0], score_thresh=0.5, masks=[_rle(mask)])
    assert np.array_equal(faint, image)
    empty = draw_detections(image, boxes, [0.9], [0], masks=[_rle(np.zeros_like(mask))])
    assert np.array_equal(empty, draw_detections(image, boxes, [0.9], [0]))
    with pytest.raises(ValueError, match="got 2 masks for 1 boxes"):
        draw_detections(image, boxes, [0.9], [0], masks=[_rle(mask)] * 2)
    with pytest.raises(
        ValueError, match=r"RLE dicts of the 80x120 \(HxW\) image, got size \[4, 5\]"
    ):
        draw_detections(image, boxes, [0.9], [0], masks=[_rle(np.ones((4, 5)))])
    with pytest.raises(ValueError, match=r"mask_alpha must be in \[0, 1\]"):
        draw_detections(image, boxes, [0.9], [0], masks=[_rle(mask)], mask_alpha=1.5)


def test_result_rows_hold_rle_that_pycocotools_decodes():
    _, mask, boxes = _scene()
    other = np.zeros_like(mask)
    other[5:9, 100:110] = 1
    rles = [_rle(mask, as_str=False), _rle(other)]  # bytes and str counts
    out = {
        "boxes": np.array([*boxes, [100, 5, 110, 9]], np.float32),
        "scores": np.array([0.9, 0.4], np.float32),
        "classes": np.array([0, 1]),
        "masks": rles,
    }
    rows = json.loads(json.dumps(demo._result_rows("x/img.png", out, {0: 5, 1: 7})))
    assert [r["category_id"] for r in rows] == [5, 7]
    for row, m in zip(rows, (mask, other), strict=True):
        seg = row["segmentation"]
        assert isinstance(seg["counts"], str) and seg["size"] == [80, 120]
        decoded = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
        np.testing.assert_array_equal(decoded, m)
    without = demo._result_rows("x/img.png", {k: v for k, v in out.items() if k != "masks"}, {})
    assert all("segmentation" not in r for r in without)


def test_demo_draws_and_writes_the_masks(tmp_path, monkeypatch):
    image, mask, boxes = _scene()
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), image)

    class MaskPredictor:  # the predictor interface, with masks (MODEL.MASK_ON)
        def __init__(self, cfg, input_format="BGR", **kwargs):
            self.input_format = input_format  # the demo's images come as cv2 gives them

        def __call__(self, img):
            return {
                "boxes": boxes,
                "scores": np.array([0.9], np.float32),
                "classes": np.array([1]),
                "masks": [_rle(mask)],
                "pixels": img.shape[0] * img.shape[1],
            }

    monkeypatch.setattr(demo, "SniperPredictor", MaskPredictor)
    out = tmp_path / "out"
    argv = ["--input", str(folder), "--output", str(out), "DATASETS.TEST", "()"]
    assert demo.main(argv) == 0
    (row,) = json.loads((out / "results.json").read_text())
    seg = row["segmentation"]
    np.testing.assert_array_equal(
        mask_utils.decode({**seg, "counts": seg["counts"].encode()}), mask
    )
    drawn = cv2.imread(str(out / "a.png"))[:, :, ::-1]
    expected = draw_detections(image, boxes, [0.9], [1], masks=[_rle(mask)])
    assert np.array_equal(drawn, expected)


def test_autofocus_drawing_draws_the_masks():
    image, mask, boxes = _scene()
    result = {
        "focus_maps": [],
        "chips_per_scale": [np.zeros((0, 4), np.float32)],
        "pixels_per_scale": [80 * 120],
        "boxes": boxes,
        "scores": np.array([0.9], np.float32),
        "classes": np.array([0]),
    }
    plain = draw_autofocus(image, result, score_thresh=0.5, alpha=0.0)
    drawn = draw_autofocus(image, {**result, "masks": [_rle(mask)]}, score_thresh=0.5, alpha=0.0)
    changed = (drawn != plain).any(-1)
    assert changed.any() and not changed[~mask.astype(bool)].any()
