"""load_coco_json / register_coco_instances: record format and every annotation rule."""

from __future__ import annotations

import json
import logging
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sniper.data.catalog import DatasetCatalog, MetadataCatalog
from sniper.data.coco import load_coco_json, register_coco_instances

RECORD_KEYS = {
    "file_name",
    "image_id",
    "height",
    "width",
    "boxes",
    "classes",
    "crowd_boxes",
    "ann_ids",
    "areas",
    "crowd_areas",
    "crowd_classes",
}


def _ann(ann_id, image_id, cat, bbox, iscrowd=0):
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat,
        "bbox": bbox,
        "iscrowd": iscrowd,
        "area": 1.0,
    }


def _write(tmp_path, data, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))  # json.dumps writes NaN / Infinity literals
    return str(path)


def _touch(root, *names):
    for n in names:
        os.makedirs(os.path.dirname(os.path.join(root, n)), exist_ok=True)
        with open(os.path.join(root, n), "wb") as f:
            f.write(b"x")


def _rules_dataset(tmp_path):
    """Image 10 (100x80) holds one annotation per rule; 20 has none; 30's file is missing."""
    nan, inf = float("nan"), float("inf")
    anns = [
        _ann(101, 10, 5, [10, 20, 30, 40]),  # kept as is
        _ann(102, 10, 90, [80, 70, 40, 20]),  # half outside -> clipped to [80, 70, 100, 80]
        _ann(103, 10, 1, [-5.5, 10, 20, 10]),  # left outside -> [0, 10, 14.5, 20]
        _ann(104, 10, 1, [nan, 0, 10, 10]),  # non-finite
        _ann(105, 10, 1, [0, 0, inf, 10]),  # non-finite
        _ann(106, 10, 99, [1, 1, 5, 5]),  # unknown category 99
        _ann(107, 10, 1, [200, 10, 10, 10]),  # entirely outside
        _ann(108, 10, 1, [10, 10, 0, 5]),  # zero width
        _ann(109, 10, 1, [10, 10, -3, 5]),  # negative width
        _ann(110, 10, 1, [99.5, 10, 10, 10]),  # 0.5 px wide after clipping
        _ann(111, 10, 1, [1, 2, 3]),  # malformed bbox
        _ann(112, 10, 1, "1,2,3,4"),  # malformed bbox
        _ann(113, 999, 1, [1, 1, 5, 5]),  # unknown image
        _ann(114, 10, 1, [0, 0, 200, 10], iscrowd=1),  # crowd, clipped to [0, 0, 100, 10]
        _ann(115, 30, 1, [1, 1, 5, 5]),  # on the image with a missing file: goes with it
        _ann(116, 10, 1, [5, 5, 10, 10]),  # kept
        _ann(117, 10, 1, [1, 2, True, 4]),  # malformed bbox (bool)
        _ann(118, 10, 1, [100, 0, 5, 5]),  # starts at the right edge: outside
    ]
    data = {
        "images": [
            {"id": 10, "file_name": "a.jpg", "height": 80, "width": 100},
            {"id": 20, "file_name": "b.jpg", "height": 40, "width": 50},
            {"id": 30, "file_name": "sub/missing.jpg", "height": 64, "width": 64},
        ],
        "annotations": anns,
        "categories": [
            {"id": 90, "name": "toothbrush"},
            {"id": 1, "name": "person"},
            {"id": 5, "name": "airplane"},
        ],
    }
    root = tmp_path / "images"
    _touch(str(root), "a.jpg", "b.jpg")
    return _write(tmp_path, data), str(root)


@pytest.fixture
def meta_name():
    name = "test_coco__meta"
    MetadataCatalog.remove(name)
    yield name
    MetadataCatalog.remove(name)
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)


def test_every_rule_exact(tmp_path, caplog, meta_name):
    json_file, root = _rules_dataset(tmp_path)
    caplog.set_level(logging.INFO, logger="sniper.data")
    with pytest.warns(UserWarning, match=r"dropped 3 \(malformed bbox\)"):
        records = load_coco_json(json_file, root, meta_name)

    assert [r["image_id"] for r in records] == [10, 20]
    a, b = records
    assert set(a) == RECORD_KEYS and set(b) == RECORD_KEYS
    assert a["file_name"] == os.path.join(os.path.abspath(root), "a.jpg")
    assert (a["height"], a["width"], b["height"], b["width"]) == (80, 100, 40, 50)
    np.testing.assert_array_equal(
        a["boxes"], [[10, 20, 40, 60], [80, 70, 100, 80], [0, 10, 14.5, 20], [5, 5, 15, 15]]
    )
    np.testing.assert_array_equal(a["classes"], [1, 2, 0, 0])  # ids 5, 90, 1, 1
    np.testing.assert_array_equal(a["ann_ids"], [101, 102, 103, 116])
    np.testing.assert_array_equal(a["crowd_boxes"], [[0, 0, 100, 10]])
    # the image without annotations is kept, with empty arrays of the right shape
    assert b["boxes"].shape == (0, 4) and b["crowd_boxes"].shape == (0, 4)
    assert b["classes"].shape == (0,) and b["ann_ids"].shape == (0,)
    for r in records:
        assert r["boxes"].dtype == np.float32 and r["crowd_boxes"].dtype == np.float32
        assert r["classes"].dtype == np.int64 and r["ann_ids"].dtype == np.int64
        assert type(r["image_id"]) is int and type(r["height"]) is int

    lines = [rec for rec in caplog.records if rec.name == "sniper.data"]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert lines[0].getMessage() == (
        f"load_coco_json({json_file}): 2 images, 4 boxes, 1 crowd boxes; clipped 3 boxes; "
        "dropped 3 (malformed bbox), 1 (unknown image), 1 (unknown category 99), "
        "2 (non-finite bbox), 2 (non-positive size), 2 (outside image), "
        "1 (under 1 px after clipping), 1 image (missing file)"
    )

    meta = MetadataCatalog.get(meta_name)
    assert meta.thing_classes == ["person", "airplane", "toothbrush"]
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 5: 1, 90: 2}
    assert meta.json_file == os.path.abspath(json_file)
    assert meta.image_root == os.path.abspath(root)
    assert meta.evaluator_type == "coco"


def test_missing_file_kept_without_check(tmp_path):
    json_file, root = _rules_dataset(tmp_path)
    with pytest.warns(UserWarning) as record:
        records = load_coco_json(json_file, root, check_images=False)
    assert [r["image_id"] for r in records] == [10, 20, 30]
    np.testing.assert_array_equal(records[2]["boxes"], [[1, 1, 6, 6]])
    np.testing.assert_array_equal(records[2]["ann_ids"], [115])
    assert "image (missing file)" not in str(record[0].message)


def test_clean_dataset_logs_info_and_does_not_warn(tmp_path, caplog):
    data = {
        "images": [{"id": 1, "file_name": "x.png", "height": 10, "width": 10}],
        "annotations": [_ann(7, 1, 3, [1.0, 2.0, 3.0, 4.0])],
        "categories": [{"id": 3, "name": "thing"}],
    }
    json_file = _write(tmp_path, data)
    caplog.set_level(logging.INFO, logger="sniper.data")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = load_coco_json(json_file, str(tmp_path), check_images=False)
    np.testing.assert_array_equal(records[0]["boxes"], [[1, 2, 4, 6]])
    lines = [rec for rec in caplog.records if rec.name == "sniper.data"]
    assert [(r.levelno, r.getMessage()) for r in lines] == [
        (
            logging.INFO,
            f"load_coco_json({json_file}): 1 images, 1 boxes, 0 crowd boxes; clipped 0 boxes; "
            "dropped nothing",
        )
    ]


def _one_image(**image):
    return {
        "images": [{"id": 7, "file_name": "x.png", "height": 10, "width": 10, **image}],
        "annotations": [],
        "categories": [],
    }


def test_duplicate_image_id_is_an_error(tmp_path):
    data = _one_image()
    data["images"].append({"id": 7, "file_name": "y.png", "height": 5, "width": 5})
    with pytest.raises(ValueError, match="duplicate image id 7"):
        load_coco_json(_write(tmp_path, data), str(tmp_path), check_images=False)


@pytest.mark.parametrize("image", [{"height": None}, {"width": 0}, {"width": 2.5}])
def test_missing_or_bad_image_size_names_the_image(tmp_path, image):
    data = _one_image(**image)
    if image.get("height", 1) is None:
        del data["images"][0]["height"]
    with pytest.raises(ValueError, match="image id 7 has missing or invalid height/width"):
        load_coco_json(_write(tmp_path, data), str(tmp_path), check_images=False)


def test_malformed_json_and_missing_keys(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match=f"{bad}: cannot read COCO json"):
        load_coco_json(str(bad), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        load_coco_json(str(tmp_path / "nowhere.json"), str(tmp_path))
    for key in ("images", "annotations", "categories"):
        data = _one_image()
        del data[key]
        path = _write(tmp_path, data, f"no_{key}.json")
        with pytest.raises(ValueError, match=f"{path}: missing top-level key '{key}'"):
            load_coco_json(path, str(tmp_path))
    path = _write(tmp_path, [1, 2], "list.json")
    with pytest.raises(ValueError, match="top level must be a json object"):
        load_coco_json(path, str(tmp_path))
    data = _one_image()
    data["categories"] = [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]
    with pytest.raises(ValueError, match="duplicate category id 1"):
        load_coco_json(_write(tmp_path, data, "dupcat.json"), str(tmp_path))


def test_register_coco_instances(tmp_path, meta_name):
    json_file, root = _rules_dataset(tmp_path)
    register_coco_instances(meta_name, json_file, root, {"author": "me"})
    assert meta_name in DatasetCatalog.list()
    meta = MetadataCatalog.get(meta_name)
    assert meta.as_dict() == {
        "name": meta_name,
        "json_file": os.path.abspath(json_file),
        "image_root": os.path.abspath(root),
        "evaluator_type": "coco",
        "author": "me",
    }
    with pytest.warns(UserWarning):
        records = DatasetCatalog.get(meta_name)
    assert [r["image_id"] for r in records] == [10, 20]
    assert meta.thing_classes == ["person", "airplane", "toothbrush"]
    with pytest.raises(ValueError, match=f"dataset '{meta_name}' is already registered"):
        register_coco_instances(meta_name, json_file, root)


def test_register_with_conflicting_classes_fails_at_load(tmp_path, meta_name):
    json_file, root = _rules_dataset(tmp_path)
    register_coco_instances(meta_name, json_file, root, {"thing_classes": ["x", "y", "z"]})
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="'thing_classes'"):
        DatasetCatalog.get(meta_name)


coord = st.one_of(
    st.floats(-50, 150, width=32), st.sampled_from([float("nan"), float("inf"), -float("inf")])
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(coord, coord, coord, coord, st.booleans()), max_size=12))
def test_kept_boxes_are_inside_and_at_least_one_pixel(tmp_path, boxes):
    anns = [_ann(i + 1, 1, 1, [x, y, w, h], int(c)) for i, (x, y, w, h, c) in enumerate(boxes)]
    data = {
        "images": [{"id": 1, "file_name": "x.png", "height": 60, "width": 100}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "a"}],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (rec,) = load_coco_json(_write(tmp_path, data), str(tmp_path), check_images=False)
    allb = np.concatenate([rec["boxes"], rec["crowd_boxes"]])
    assert len(rec["boxes"]) + len(rec["crowd_boxes"]) <= len(boxes)
    assert np.isfinite(allb).all()
    assert (allb[:, [0, 1]] >= 0).all() and (allb[:, 2] <= 100).all() and (allb[:, 3] <= 60).all()
    assert (allb[:, 2] - allb[:, 0] >= 1).all() and (allb[:, 3] - allb[:, 1] >= 1).all()
    assert len(rec["crowd_boxes"]) <= sum(c for *_, c in boxes)


def test_unknown_categories_reported_per_id_in_numeric_order(tmp_path, caplog):
    data = {
        "images": [{"id": 1, "file_name": "x.png", "height": 10, "width": 10}],
        "annotations": [
            _ann(1, 1, 81, [1, 1, 2, 2]),
            _ann(2, 1, 9, [1, 1, 2, 2]),
            _ann(3, 1, 81, [1, 1, 2, 2]),
            _ann(4, 1, None, [1, 1, 2, 2]),
        ],
        "categories": [{"id": 3, "name": "thing"}],
    }
    json_file = _write(tmp_path, data)
    caplog.set_level(logging.INFO, logger="sniper.data")
    with pytest.warns(UserWarning, match="dropped 1 .unknown category 9., 2 .unknown category 81"):
        (rec,) = load_coco_json(json_file, str(tmp_path), check_images=False)
    assert rec["boxes"].shape == (0, 4)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "sniper.data"]
    assert line.endswith(
        "0 boxes, 0 crowd boxes; clipped 0 boxes; dropped 1 (unknown category 9), "
        "2 (unknown category 81), 1 (unknown category None)"
    )
