"""Bad datasets found before the first iteration, and the loader that stops instead of
spinning: `sniper.data.checks`, `TrainChipLoader`, the COCO field rules."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
from engine_fakes import unregister, write_coco_dataset
from PIL import Image

from sniper.config import setup_cfg
from sniper.data.build import TrainChipLoader
from sniper.data.checks import check_image_files, check_job_data, image_size
from sniper.data.chip_mapper import ChipMapper
from sniper.data.chip_sampler import ChipSampler
from sniper.data.coco import load_coco_json
from sniper.image_ops import ImageReadError

SIZES = [(100, 120), (80, 90), (60, 70)]
GT = {0: [([10, 10, 40, 40], 0)], 1: [([5, 5, 50, 50], 1)], 2: [([20, 20, 30, 30], 0)]}


@pytest.fixture()
def dataset(tmp_path):
    name = f"checks_{tmp_path.name}"
    records = write_coco_dataset(tmp_path / "data", name, SIZES, GT)
    yield name, records
    unregister(name)


def _cfg(name: str, *opts: str):
    return setup_cfg(
        "",
        [
            "MODEL.NUM_CLASSES",
            "2",
            "SNIPER.TRAIN_SCALES",
            "[1.0]",
            "SNIPER.VALID_RANGES",
            "[[-1, -1]]",
            "SNIPER.NEG_MIN_PROPOSALS",
            "[1]",
            "SNIPER.CHIP_SIZE",
            "64",
            "SNIPER.CHIP_STRIDE",
            "32",
            "DATASETS.TRAIN",
            f"('{name}',)",
            "DATASETS.TEST",
            f"('{name}',)",
            *opts,
        ],
    )


def _corrupt(path: str) -> None:
    with open(path, "wb") as f:
        f.write(b"not an image")


def test_good_dataset_passes(dataset):
    name, _ = dataset
    check_job_data(_cfg(name))


def test_mask_on_needs_masks_in_the_training_set(dataset):
    """MODEL.MASK_ON on a box-only dataset: one line naming the key and the dataset, before
    training; the same dataset evaluated only (eval-only check) is fine."""
    name, _ = dataset
    cfg = _cfg(name, "MODEL.MASK_ON", "True")
    with pytest.raises(ValueError) as err:
        check_job_data(cfg)
    assert str(err.value).startswith(
        f"MODEL.MASK_ON is set but dataset '{name}' (DATASETS.TRAIN) has no instance masks"
    )
    check_job_data(cfg, train=False)


@pytest.mark.parametrize("num_classes", [1, 3, 8])
def test_num_classes_must_match_the_categories(dataset, num_classes):
    name, _ = dataset
    with pytest.raises(ValueError) as err:
        check_job_data(_cfg(name, "MODEL.NUM_CLASSES", str(num_classes)))
    assert str(err.value) == (
        f"MODEL.NUM_CLASSES = {num_classes} but dataset '{name}' has 2 categories (a, b); "
        "set MODEL.NUM_CLASSES 2"
    )


def test_all_training_images_unreadable(dataset):
    name, records = dataset
    for r in records:
        _corrupt(r["file_name"])
    with pytest.raises(ValueError) as err:
        check_job_data(_cfg(name))
    msg = str(err.value)
    assert msg.startswith(f"DATASETS.TRAIN ['{name}']: none of the 3 images with chips")
    assert "0.png (unreadable: " in msg and "2.png (unreadable: " in msg
    assert "\n" not in msg


def test_all_training_images_of_another_size(dataset):
    name, records = dataset
    for r in records:
        cv2.imwrite(r["file_name"], np.zeros((10, 11, 3), np.uint8))
    with pytest.raises(ValueError, match=r"0\.png \(image is 10x11 \(HxW\) but its record says "):
        check_job_data(_cfg(name))


def test_some_unreadable_images_warn_once(dataset, caplog):
    name, records = dataset
    _corrupt(records[1]["file_name"])
    with caplog.at_level(logging.WARNING, logger="sniper.data"):
        check_job_data(_cfg(name))
    lines = [r.getMessage() for r in caplog.records if "cannot be used" in r.getMessage()]
    assert len(lines) == 2  # one for the training set, one for the test set
    assert lines[0].startswith(f"DATASETS.TRAIN ['{name}']: 1 of 3 images with chips")
    assert lines[1].startswith(f"dataset '{name}' (DATASETS.TEST): 1 of 3 images cannot be")


def test_eval_only_checks_only_the_test_set(dataset):
    name, records = dataset
    for r in records:
        _corrupt(r["file_name"])
    with pytest.raises(ValueError, match=rf"dataset '{name}' \(DATASETS.TEST\): none of its 3"):
        check_job_data(_cfg(name), train=False)


def test_empty_dataset_and_no_chips(dataset, tmp_path):
    name, _ = dataset
    empty_name = f"{name}_empty"
    json_file = tmp_path / "empty.json"
    json_file.write_text(
        json.dumps({"images": [], "annotations": [], "categories": [{"id": 5, "name": "a"}]})
    )
    from sniper.data.coco import register_coco_instances

    register_coco_instances(empty_name, str(json_file), str(tmp_path))
    try:
        with pytest.raises(ValueError) as err:
            check_job_data(_cfg(name, "DATASETS.TRAIN", f"('{empty_name}',)"))
        assert str(err.value) == f"dataset '{empty_name}' (DATASETS.TRAIN) has no images"
    finally:
        unregister(empty_name)
    with pytest.raises(ValueError, match=r"yields no chips: none of its 3 images has a box"):
        check_job_data(_cfg(name, "SNIPER.VALID_RANGES", "[[500, -1]]"))


def test_image_size_reads_headers_and_exif_rotation(tmp_path):
    png = str(tmp_path / "a.png")
    cv2.imwrite(png, np.zeros((30, 40, 3), np.uint8))
    assert image_size(png) == (30, 40)
    jpg = str(tmp_path / "r.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: OpenCV returns it as 40 x 30
    Image.new("RGB", (40, 30)).save(jpg, exif=exif)
    assert image_size(jpg) == (40, 30) == cv2.imread(jpg).shape[:2]
    with pytest.raises(ImageReadError, match="no such file"):
        image_size(str(tmp_path / "none.png"))
    bad = str(tmp_path / "bad.png")
    _corrupt(bad)
    with pytest.raises(ImageReadError, match="missing, unreadable or corrupt"):
        image_size(bad)


def test_check_image_files_lists_every_failure(dataset):
    _, records = dataset
    _corrupt(records[0]["file_name"])
    cv2.imwrite(records[2]["file_name"], np.zeros((7, 8, 3), np.uint8))
    failures = check_image_files(records)
    assert [f for f, _ in failures] == [records[0]["file_name"], records[2]["file_name"]]
    assert failures[1][1] == "image is 7x8 (HxW) but its record says 60x70"


def _loader(records) -> TrainChipLoader:
    sampler = ChipSampler(records, [1.0], [[-1, -1]], chip_size=64, stride=32, flip=False)
    return TrainChipLoader(sampler, ChipMapper(), 1)


def test_loader_stops_when_no_image_is_usable(dataset, caplog):
    _, records = dataset
    for r in records:
        _corrupt(r["file_name"])
    loader = _loader(records)
    with caplog.at_level(logging.WARNING, logger="sniper.data"):
        with pytest.raises(ValueError) as err:
            next(loader)
    msg = str(err.value)
    assert msg.startswith("no training chip could be made in epoch 0: 3 image file(s) failed")
    assert msg.count("(unreadable: ") == 3
    skips = [r for r in caplog.records if r.getMessage().startswith("skipping the chips of")]
    assert len(skips) == 3  # once per file


def test_loader_warns_once_per_bad_file_over_epochs(dataset, caplog):
    _, records = dataset
    _corrupt(records[1]["file_name"])
    loader = _loader(records)
    usable = len(loader.epoch_batches(0)) - 1  # one chip per image and batch
    with caplog.at_level(logging.WARNING, logger="sniper.data"):
        batches = [next(loader) for _ in range(3 * usable)]  # into epoch 2
    assert all(t["image_index"] != 1 for b in batches for _, t in b)
    skips = [r for r in caplog.records if r.getMessage().startswith("skipping the chips of")]
    assert len(skips) == 1 and records[1]["file_name"] in skips[0].getMessage()
    assert loader.bad_files.keys() == {records[1]["file_name"]}
    summaries = [r for r in caplog.records if "skipped the chips of" in r.getMessage()]
    assert [r.getMessage().split(":")[0] for r in summaries] == ["epoch 0", "epoch 1"]
    assert summaries[0].getMessage() == (
        "epoch 0: skipped the chips of 1 unusable image(s) on rank 0 (1 distinct file(s) so far)"
    )


def _json(tmp_path, ann: dict) -> str:
    path = tmp_path / "one.json"
    base = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 20]}
    path.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "x.png", "height": 50, "width": 50}],
                "annotations": [{**base, **ann}],
                "categories": [{"id": 1, "name": "a"}],
            }
        )
    )
    return str(path)


@pytest.mark.parametrize("value", ["yes", "0", 2, None, 1.0])
def test_iscrowd_accepts_only_0_1_and_bools(tmp_path, value):
    path = _json(tmp_path, {"iscrowd": value})
    with pytest.raises(ValueError) as err:
        load_coco_json(path, str(tmp_path), check_images=False)
    assert str(err.value) == (
        f"{path}: annotation id 1 has iscrowd = {value!r}; expected 0 or 1 (or true / false)"
    )


@pytest.mark.parametrize(("value", "crowd"), [(0, 0), (1, 1), (False, 0), (True, 1)])
def test_iscrowd_values_accepted(tmp_path, value, crowd):
    r = load_coco_json(_json(tmp_path, {"iscrowd": value}), str(tmp_path), check_images=False)[0]
    assert (len(r["crowd_boxes"]), len(r["boxes"])) == (crowd, 1 - crowd)


def test_missing_fields_are_filled(tmp_path):
    """No iscrowd: not crowd; no area: the clipped box's w * h (the box crosses the edge)."""
    path = _json(tmp_path, {"bbox": [45, 0, 10, 20]})
    r = load_coco_json(path, str(tmp_path), check_images=False)[0]
    assert r["boxes"].tolist() == [[45, 0, 50, 20]]
    assert r["areas"].tolist() == [100.0] and r["areas"].dtype == np.float32
    given = load_coco_json(_json(tmp_path, {"area": 7}), str(tmp_path), check_images=False)[0]
    assert given["areas"].tolist() == [7.0]


@pytest.mark.parametrize("value", ["big", -1, None, True])
def test_bad_area_is_an_error(tmp_path, value):
    path = _json(tmp_path, {"area": value})
    with pytest.raises(ValueError, match=rf"annotation id 1 has area = {value!r}; expected"):
        load_coco_json(path, str(tmp_path), check_images=False)
