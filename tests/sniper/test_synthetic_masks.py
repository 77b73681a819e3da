"""Exact instance masks of the synthetic digits (version 2) and their COCO RLE encoding."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sniper.data import synthetic
from sniper.data.synthetic import SYNTHETIC_VERSION, SyntheticSplit, build_split, render_seed
from sniper.data.synthetic_render import render_image, render_instances
from sniper.patch_rle import patch_to_rle

TINY = SyntheticSplit("synthetic_test_masks", num_images=3, canvas=512, seed=77)

#: sha256 of (image, boxes, classes) bytes of TINY's 3 images, computed with generator
#: version 1 (before masks existed): version 2 must render the very same pixels and boxes.
VERSION1_SHA256 = "ee8cd2166fa3a8da59df2b06013182ba5ace942bd5219d49fdff43ecfaa90b1f"


def _full_mask(patch: np.ndarray, x: int, y: int, height: int, width: int) -> np.ndarray:
    full = np.zeros((height, width), dtype=np.uint8, order="F")
    full[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    return full


def test_patch_to_rle_by_hand() -> None:
    # 3x2 image, column-major order 0..5; a 2x1 patch at x=1, y=1 sets indices 4 and 5
    rle = patch_to_rle(np.ones((2, 1), dtype=bool), 1, 1, 3, 2)
    assert rle["size"] == [3, 2] and isinstance(rle["counts"], str)
    uncompressed = mask_utils.frPyObjects({"counts": [4, 2], "size": [3, 2]}, 3, 2)
    assert rle["counts"].encode() == uncompressed["counts"]
    expected = np.array([[0, 0], [0, 1], [0, 1]], dtype=np.uint8)
    decoded = mask_utils.decode({"size": [3, 2], "counts": rle["counts"].encode()})
    np.testing.assert_array_equal(decoded, expected)
    # an all-zero patch is one run of zeros
    empty = patch_to_rle(np.zeros((2, 2), dtype=np.uint8), 0, 0, 3, 2)
    assert empty["counts"].encode() == mask_utils.encode(np.zeros((3, 2), np.uint8, "F"))["counts"]


def test_patch_to_rle_equals_mask_encode_of_the_pasted_mask() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(1, 30, size=2))
        h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        patch = rng.random((h, w)) < rng.random() ** 2  # includes full-height runs, edges
        ref = mask_utils.encode(_full_mask(patch, x, y, height, width))
        got = patch_to_rle(patch, x, y, height, width)
        assert got == {"size": [height, width], "counts": ref["counts"].decode("ascii")}


def test_patch_to_rle_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="2-D"):
        patch_to_rle(np.ones((2, 2, 1)), 0, 0, 4, 4)
    with pytest.raises(ValueError, match="does not fit"):
        patch_to_rle(np.ones((2, 3)), 2, 0, 4, 4)
    with pytest.raises(ValueError, match="does not fit"):
        patch_to_rle(np.ones((2, 2)), 0, -1, 4, 4)
    with pytest.raises(ValueError, match="positive"):
        patch_to_rle(np.ones((0, 0)), 0, 0, 0, 4)
    with pytest.raises(TypeError, match="x must be an integer"):
        patch_to_rle(np.ones((1, 1)), 0.5, 0, 4, 4)


@pytest.mark.parametrize("seed", [11, 22])
def test_masks_are_the_painted_pixels(seed: int) -> None:
    textured = render_instances(seed, 1024)
    image, boxes, classes = render_image(seed, 1024)
    np.testing.assert_array_equal(textured.image, image)
    np.testing.assert_array_equal(textured.boxes, boxes)
    np.testing.assert_array_equal(textured.classes, classes)
    for grey in (128, 0, 255):
        flat = render_instances(seed, 1024, flat_background=grey)
        np.testing.assert_array_equal(flat.boxes, boxes)
        assert len(flat.masks) == len(boxes)
        ink = (flat.image != grey).any(axis=2)
        for mask, texture_mask, (x1, y1, x2, y2) in zip(
            flat.masks, textured.masks, boxes.astype(int), strict=True
        ):
            np.testing.assert_array_equal(mask, texture_mask)  # background-independent
            assert mask.dtype == bool and mask.shape == (y2 - y1, x2 - x1)
            assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
            changed = ink[y1:y2, x1:x2]
            if grey == 128:  # mid grey: every painted pixel visibly changes
                np.testing.assert_array_equal(changed, mask)
            else:  # a colour clipped to black/white may leave painted pixels unchanged
                assert not (changed & ~mask).any()


def test_version1_pixels_and_boxes_unchanged() -> None:
    digest = hashlib.sha256()
    for index in range(TINY.num_images):
        image, boxes, classes = render_image(render_seed(TINY.seed, index), TINY.canvas)
        for array in (image, boxes, classes):
            digest.update(array.tobytes())
    assert digest.hexdigest() == VERSION1_SHA256


def test_build_split_writes_exact_rle_masks(tmp_path) -> None:
    json_file, _ = build_split(TINY, tmp_path)
    with open(json_file, encoding="utf-8") as f:
        data = json.load(f)
    assert data["info"]["synthetic"]["version"] == SYNTHETIC_VERSION == 2
    coco = COCO(json_file)
    for index in range(TINY.num_images):
        rendered = render_instances(render_seed(TINY.seed, index), TINY.canvas)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=index + 1))
        assert len(anns) == len(rendered.masks)
        union = np.zeros((TINY.canvas, TINY.canvas), dtype=np.int64)
        for ann, patch, box in zip(anns, rendered.masks, rendered.boxes, strict=True):
            x, y, w, h = ann["bbox"]
            assert [x, y, x + w, y + h] == box.tolist()
            assert ann["area"] == w * h  # box area, as in version 1
            assert isinstance(ann["segmentation"]["counts"], str)
            mask = coco.annToMask(ann)
            assert mask.shape == (TINY.canvas, TINY.canvas)
            rows, cols = np.nonzero(mask)
            # the extent of the set pixels is exactly the (exclusive) bbox
            assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (x, y, x + w, y + h)
            np.testing.assert_array_equal(mask, _full_mask(patch, int(x), int(y), *mask.shape))
            union += mask
        assert union.max() == 1  # masks of different instances are disjoint


def test_version1_cache_is_rebuilt_and_version2_reused(tmp_path, monkeypatch) -> None:
    json_file, _ = build_split(TINY, tmp_path)
    with open(json_file, encoding="utf-8") as f:
        data = json.load(f)
    # forge the cache a version-1 generator wrote: same images, no segmentation
    data["info"]["synthetic"]["version"] = 1
    for ann in data["annotations"]:
        del ann["segmentation"]
    with open(json_file, "w", encoding="utf-8") as f:
        json.dump(data, f)
    build_split(TINY, tmp_path)
    with open(json_file, encoding="utf-8") as f:
        rebuilt = json.load(f)
    assert rebuilt["info"]["synthetic"]["version"] == 2
    assert all("segmentation" in ann for ann in rebuilt["annotations"])
    assert not [n for n in os.listdir(os.path.dirname(json_file)) if ".tmp" in n]

    def fail(seed: int, canvas: int):
        raise AssertionError("a complete version-2 cache must not be regenerated")

    mtime = os.stat(json_file).st_mtime_ns
    monkeypatch.setattr(synthetic, "render_instances", fail)
    build_split(TINY, tmp_path)
    assert os.stat(json_file).st_mtime_ns == mtime


def test_synthetic_masks_reach_the_chips_aligned_with_their_boxes(tmp_path) -> None:
    """The joint: generator RLE -> COCO loader -> chip sampler -> mapper. At factors 1 and 2
    a glyph's chip mask spans exactly its chip box when the chip holds the whole glyph, and
    lies inside its box when the chip cuts it (the clipped box of a cut glyph can be larger
    than what is left of the glyph)."""
    import cv2

    from sniper.data.chip_mapper import ChipMapper
    from sniper.data.chip_sampler import ChipSampler
    from sniper.data.coco import load_coco_json

    json_file, image_root = build_split(TINY, tmp_path)
    records = load_coco_json(json_file, image_root)
    assert all(len(r["segmentations"]) == len(r["boxes"]) for r in records)
    chips = ChipSampler(
        records, [2.0, 1.0], [[-1, 40], [30, -1]], chip_size=256, stride=32, seed=0
    ).epoch_chips(0)
    mapper = ChipMapper(with_masks=True)
    checked = 0
    for chip in chips:
        _, target = mapper.map_chip(cv2.imread(chip.file_name), chip)
        for mask, box in zip(target["masks"].numpy(), target["boxes"].numpy(), strict=True):
            ys, xs = np.nonzero(mask)
            extent = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
            box = np.round(box).astype(int).tolist()
            assert box[0] <= extent[0] < extent[2] <= box[2]
            assert box[1] <= extent[1] < extent[3] <= box[3]
            if box[0] > 0 and box[1] > 0 and box[2] < chip.width and box[3] < chip.height:
                assert extent == box
                checked += 1
    assert checked > 20
