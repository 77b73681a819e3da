"""COCO masks in the data: the loader keeps them compact, chips crop / scale / flip them with
their boxes (one rule, `sniper.data.chip_masks`), the mapper aligns them with the valid boxes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sniper.data.chip_mapper import ChipMapper
from sniper.data.chip_masks import check_segmentation, chip_masks
from sniper.data.chip_sampler import ChipSampler
from sniper.data.coco import load_coco_json
from sniper.structures import flip_boxes, image_to_chip


def _rect(x1, y1, x2, y2):
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _rle_string(mask):
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _rle_list(mask):
    """Uncompressed COCO RLE: column-major runs, starting with a (possibly empty) run of 0."""
    flat = mask.ravel(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.r_[0, edges, flat.size]).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"size": list(mask.shape), "counts": runs}


@pytest.mark.parametrize("factor", [0.6, 1.0, 1.7])
@pytest.mark.parametrize("flip", [False, True])
def test_mask_bbox_is_the_rounded_chip_box(factor, flip):
    """Rectangles as polygons: the chip mask's bounding box is the box map of the box, clipped
    to the chip and rounded (pixel-centre rule), for 40 random rectangles per case."""
    rng = np.random.default_rng([int(factor * 10), flip])
    image_size, canvas_box = (300, 400), (30, 20, 230, 170)
    w, h = canvas_box[2] - canvas_box[0], canvas_box[3] - canvas_box[1]
    checked = 0
    while checked < 40:
        x1, y1 = rng.uniform(0, 350), rng.uniform(0, 250)
        box = np.array([[x1, y1, x1 + rng.uniform(5, 50), y1 + rng.uniform(5, 50)]])
        chip = image_to_chip(box, canvas_box, factor).astype(np.float64)
        if flip:
            chip = flip_boxes(chip, w).astype(np.float64)
        chip = np.clip(chip, 0, [w, h, w, h])[0]
        near_tie = np.abs(chip - np.floor(chip) - 0.5) < 0.15
        expected = np.round(chip).astype(int)
        if near_tie.any() or expected[2] <= expected[0] or expected[3] <= expected[1]:
            continue
        masks = chip_masks([_rect(*box[0].tolist())], canvas_box, factor, image_size, flip)
        assert masks.shape == (1, h, w) and masks.dtype == np.uint8
        assert _bbox(masks[0]) == expected.tolist(), (box, factor, flip)
        checked += 1


@pytest.mark.parametrize("factor", [0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("flip", [False, True])
def test_polygon_and_rle_of_one_shape_give_one_chip_mask(factor, flip):
    """An L shape on the pixel grid as a polygon, a compressed RLE and a run-length list."""
    image_size = (40, 50)
    poly = [[12, 8, 30, 8, 30, 16, 20, 16, 20, 24, 12, 24]]
    full = mask_utils.decode(mask_utils.frPyObjects(poly, *image_size))[:, :, 0]
    assert full.sum() == 18 * 8 + 8 * 8  # rows 8-15 cols 12-29, rows 16-23 cols 12-19
    canvas_box = (int(4 * factor), int(6 * factor), int(40 * factor), int(30 * factor))
    got = chip_masks(
        [poly, _rle_string(full), _rle_list(full)], canvas_box, factor, image_size, flip
    )
    assert got[0].any()
    np.testing.assert_array_equal(got[1], got[0])
    np.testing.assert_array_equal(got[2], got[0])


def test_mask_partly_outside_the_chip_is_cropped_exactly():
    # Image box [5, 5, 20, 15]; the chip is canvas [10, 0, 30, 12] at factor 1 (12 x 20 px).
    expected = np.zeros((12, 20), np.uint8)
    expected[5:12, 0:10] = 1
    for segm in (_rect(5, 5, 20, 15), _rle_string(_rect_mask(5, 5, 20, 15, (40, 50)))):
        got = chip_masks([segm, None], (10, 0, 30, 12), 1.0, (40, 50))
        np.testing.assert_array_equal(got[0], expected)
        np.testing.assert_array_equal(got[1], np.zeros((12, 20), np.uint8))
        flipped = chip_masks([segm], (10, 0, 30, 12), 1.0, (40, 50), flip=True)
        np.testing.assert_array_equal(flipped[0], expected[:, ::-1])


def _rect_mask(x1, y1, x2, y2, size):
    m = np.zeros(size, np.uint8)
    m[y1:y2, x1:x2] = 1
    return m


def test_chip_masks_rejects_bad_input():
    with pytest.raises(ValueError, match=r"^segmentation 1: polygon 0 has an odd number"):
        chip_masks([None, [[1, 2, 3, 4, 5]]], (0, 0, 10, 10), 1.0, (10, 10))
    with pytest.raises(ValueError, match="factor must be a finite number > 0"):
        chip_masks([], (0, 0, 10, 10), 0.0, (10, 10))
    with pytest.raises(ValueError, match="canvas_box must have x2 > x1"):
        chip_masks([], (5, 0, 5, 10), 1.0, (10, 10))
    assert chip_masks([], (0, 0, 4, 3), 1.0, (10, 10)).shape == (0, 3, 4)


def test_check_segmentation_keeps_the_compact_form():
    poly = [[0, 0, 4, 0, 4, 4], [1, 1, 2, 2]]  # the 2-point part has no area: left out
    assert check_segmentation(poly, (10, 10)) == [[0, 0, 4, 0, 4, 4]]
    assert check_segmentation([[1, 1, 2, 2]], (10, 10)) is None
    assert check_segmentation([], (10, 10)) is None and check_segmentation(None, (1, 1)) is None
    rle = {"size": [2, 3], "counts": [1, 4, 1]}
    assert check_segmentation(rle, (2, 3)) is rle


# ---- the loader ----------------------------------------------------------------------


def _coco(tmp_path, anns):
    (tmp_path / "a.png").write_bytes(b"x")
    data = {
        "images": [
            {"id": 10, "file_name": "a.png", "height": 40, "width": 50},
            {"id": 20, "file_name": "a.png", "height": 40, "width": 50},
        ],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": i, "image_id": img, "category_id": 1, "bbox": bbox, "iscrowd": crowd, **extra}
            for i, img, bbox, crowd, extra in anns
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_loader_keeps_polygons_and_both_rle_encodings_aligned_with_boxes(tmp_path):
    full = _rect_mask(20, 10, 30, 20, (40, 50))
    poly, rle_s, rle_l = _rect(1, 2, 11, 12), _rle_string(full), _rle_list(full)
    crowd_rle = _rle_string(_rect_mask(0, 0, 5, 5, (40, 50)))
    path = _coco(
        tmp_path,
        [
            (1, 10, [1, 2, 10, 10], 0, {"segmentation": poly}),
            (2, 10, [0, 0, 5, 5], 1, {"segmentation": crowd_rle}),
            (3, 10, [20, 10, 10, 10], 0, {"segmentation": rle_s}),
            (4, 20, [20, 10, 10, 10], 0, {"segmentation": rle_l}),
            (5, 20, [3, 3, 4, 4], 0, {}),
            (6, 20, [60, 60, 4, 4], 0, {"segmentation": "not checked: dropped box"}),
        ],
    )
    with pytest.warns(UserWarning, match=r"1 \(outside image\)"):
        recs = load_coco_json(path, str(tmp_path))
    assert recs[0]["ann_ids"].tolist() == [1, 3]
    assert recs[0]["segmentations"] == [poly, rle_s]
    assert recs[0]["crowd_boxes"].tolist() == [[0, 0, 5, 5]]  # crowd stays an ignore region
    assert recs[1]["ann_ids"].tolist() == [4, 5]
    assert recs[1]["segmentations"] == [rle_l, None]


def test_loader_without_masks_adds_no_key(tmp_path):
    path = _coco(tmp_path, [(1, 10, [1, 2, 10, 10], 0, {}), (2, 10, [0, 0, 5, 5], 1, {})])
    recs = load_coco_json(path, str(tmp_path))
    assert all("segmentations" not in r for r in recs)


@pytest.mark.parametrize(
    "segm, problem",
    [
        ("abc", "segmentation must be a list of polygons or an RLE dict, got str"),
        ([[1, 2, 3, 4, 5, 6, 7]], "polygon 0 has an odd number of coordinates (7)"),
        ([[1, 2, 3, 4, float("nan"), 6]], "polygon 0 has a NaN or infinite coordinate"),
        ([[1, 2, 3, "4", 5, 6]], "polygon 0 is not a list of numbers"),
        (
            {"size": [50, 40], "counts": "abc"},
            "RLE size [50, 40] does not match the image's [height, width] [40, 50]",
        ),
        (
            {"size": [40, 50], "counts": [10, 20]},
            "RLE run lengths sum to 30, not height * width = 2000",
        ),
        ({"size": [40, 50], "counts": 7}, "RLE 'counts' must be a string or a list"),
    ],
)
def test_loader_names_file_annotation_and_problem(tmp_path, segm, problem):
    path = _coco(tmp_path, [(7, 10, [1, 2, 10, 10], 0, {"segmentation": segm})])
    with pytest.raises(ValueError) as e:
        load_coco_json(path, str(tmp_path))
    assert str(e.value).startswith(f"{path}: annotation id 7 has a malformed segmentation: ")
    assert problem in str(e.value)


def test_a_crowd_mask_is_not_kept_nor_checked(tmp_path):
    path = _coco(tmp_path, [(1, 10, [1, 2, 10, 10], 1, {"segmentation": "junk"})])
    recs = load_coco_json(path, str(tmp_path))
    assert "segmentations" not in recs[0] and len(recs[0]["crowd_boxes"]) == 1


# ---- the mapper ----------------------------------------------------------------------


def _records(tmp_path):
    """Two images with integer boxes of 8-150 px, each with its rectangle as a polygon."""
    rng = np.random.default_rng(3)
    records = []
    for i in range(2):
        h, w = 300, 360
        x1, y1 = rng.integers(0, 200, 12), rng.integers(0, 150, 12)
        s = rng.integers(8, 150, 12)
        boxes = np.stack([x1, y1, np.minimum(x1 + s, w), np.minimum(y1 + s, h)], 1)
        path = str(tmp_path / f"{i}.png")
        cv2.imwrite(path, np.zeros((h, w, 3), np.uint8))
        records.append(
            dict(
                file_name=path,
                image_id=i,
                height=h,
                width=w,
                boxes=boxes.astype(np.float32),
                classes=np.zeros(12, np.int64),
                crowd_boxes=np.array([[0, 0, 20, 20]], np.float32),
                segmentations=[_rect(*b) for b in boxes.tolist()],
            )
        )
    return records


def test_mapper_masks_align_with_the_valid_boxes_and_skip_ignore_boxes(tmp_path):
    records = _records(tmp_path)
    chips = ChipSampler(
        records, [2.0, 1.0], [[-1, 40], [30, -1]], chip_size=192, stride=16, seed=1
    ).epoch_chips(0)
    mapper = ChipMapper(with_masks=True)
    n_valid = n_ignore = 0
    for chip in chips:
        for flip in (False, True):
            spec = chip.__class__(**{**chip.__dict__, "flip": flip})
            _, target = mapper.map_chip(cv2.imread(spec.file_name), spec)
            masks, boxes = target["masks"].numpy(), target["boxes"].numpy()
            assert masks.shape == (len(boxes), 192, 192) and masks.dtype == np.uint8
            # Integer boxes at factors 1 and 2: each mask's bounding box is its box exactly.
            assert [_bbox(m) for m in masks] == boxes.astype(int).tolist()
            assert not masks[:, spec.height :].any() and not masks[:, :, spec.width :].any()
            n_valid, n_ignore = n_valid + len(boxes), n_ignore + len(target["ignore_boxes"])
    assert n_valid > 0 and n_ignore > 0


def test_mapper_without_masks_is_unchanged_and_asks_for_segmentations(tmp_path):
    records = _records(tmp_path)
    for r in records:
        del r["segmentations"]
    chip = ChipSampler(records, [1.0], [[-1, -1]], chip_size=192, stride=16).epoch_chips(0)[0]
    image = cv2.imread(chip.file_name)
    assert "masks" not in ChipMapper().map_chip(image, chip)[1]
    with pytest.raises(ValueError, match="masks were asked for .* no 'segmentations'"):
        ChipMapper(with_masks=True).map_chip(image, chip)
    with pytest.raises(ValueError, match="with_masks must be True or False"):
        ChipMapper(with_masks=1)


def test_sampler_rejects_segmentations_not_aligned_with_boxes(tmp_path):
    records = _records(tmp_path)
    records[1]["segmentations"] = records[1]["segmentations"][:-1]
    with pytest.raises(ValueError, match=r"record 1 \(.*1.png\): 11 segmentations for 12 boxes"):
        ChipSampler(records, [1.0], [[-1, -1]], chip_size=192, stride=16)
