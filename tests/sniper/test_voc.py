"""The Pascal VOC loader on hand-written XMLs: coordinates, difficult -> ignore, errors."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from engine_fakes import unregister
from voc_fakes import write_voc_folder

from sniper.data.catalog import DatasetCatalog, MetadataCatalog
from sniper.data.voc import (
    VOC_CLASS_NAMES,
    load_voc_instances,
    read_voc_xml,
    register_pascal_voc,
)

CLASSES = ("cat", "dog")
IMAGES = {
    "000005": (
        80,
        120,
        [
            ("dog", [11, 21, 50, 60], 0),  # -> (10, 20, 50, 60)
            ("cat", [61, 31, 80, 40], 1),  # difficult -> ignore region (60, 30, 80, 40)
            ("cat", [0, 5, 130, 40], 0),  # (-1, 4, 130, 40) clipped to (0, 4, 120, 40)
            ("dog", [40, 10, 30, 20], 0),  # xmax < xmin: non-positive size, dropped
            ("cat", [30.0, 50, 30, 59], 0),  # one pixel wide: (29, 49, 30, 59), kept
        ],
    ),
    "2008_000002": (40, 30, []),  # an image without objects is kept
}


def test_voc_class_names_are_detectron2s() -> None:
    assert len(VOC_CLASS_NAMES) == 20
    assert VOC_CLASS_NAMES[:3] == ("aeroplane", "bicycle", "bird")
    assert VOC_CLASS_NAMES[14] == "person" and VOC_CLASS_NAMES[-1] == "tvmonitor"


def test_records_from_hand_written_xml(tmp_path) -> None:
    root = write_voc_folder(tmp_path / "VOC2007", IMAGES, "trainval")
    with pytest.warns(UserWarning, match=r"dropped 1 \(non-positive size\)"):
        records = load_voc_instances(root, "trainval", CLASSES)
    assert [r["file_id"] for r in records] == ["000005", "2008_000002"]
    first, second = records
    assert first["file_name"] == os.path.join(os.path.abspath(root), "JPEGImages", "000005.jpg")
    assert (first["image_id"], first["height"], first["width"]) == (0, 80, 120)
    assert first["boxes"].dtype == np.float32 and first["classes"].dtype == np.int64
    np.testing.assert_array_equal(
        first["boxes"], [[10, 20, 50, 60], [0, 4, 120, 40], [29, 49, 30, 59]]
    )
    np.testing.assert_array_equal(first["classes"], [1, 0, 0])
    np.testing.assert_array_equal(first["ann_ids"], [0, 2, 4])
    np.testing.assert_array_equal(first["crowd_boxes"], [[60, 30, 80, 40]])
    np.testing.assert_array_equal(first["crowd_classes"], [0])
    assert second["image_id"] == 1 and (second["height"], second["width"]) == (40, 30)
    assert second["boxes"].shape == (0, 4) and second["crowd_boxes"].shape == (0, 4)
    assert second["classes"].shape == (0,) and second["crowd_classes"].shape == (0,)


def test_read_voc_xml_keeps_raw_coordinates(tmp_path) -> None:
    root = write_voc_folder(tmp_path, {"a": IMAGES["000005"]})
    ann = read_voc_xml(os.path.join(root, "Annotations", "a.xml"), CLASSES)
    assert (ann["height"], ann["width"]) == (80, 120)
    np.testing.assert_array_equal(ann["boxes"][0], [11, 21, 50, 60])
    np.testing.assert_array_equal(ann["difficult"], [False, True, False, False, False])


def test_missing_jpeg_is_dropped_and_counted(tmp_path) -> None:
    root = write_voc_folder(tmp_path, {"a": (10, 10, []), "b": (10, 10, [])})
    os.remove(os.path.join(root, "JPEGImages", "a.jpg"))
    with pytest.warns(UserWarning, match=r"1 image \(missing file\)"):
        records = load_voc_instances(root, "test", CLASSES)
    assert [r["file_id"] for r in records] == ["b"]


def test_malformed_xml_names_the_file(tmp_path) -> None:
    root = write_voc_folder(tmp_path, {"a": (10, 10, [])})
    path = os.path.join(root, "Annotations", "a.xml")
    with open(path, "w") as f:
        f.write("<annotation><size><width>10</width>")
    with pytest.raises(ValueError, match=f"{re.escape(path)}: malformed VOC annotation XML"):
        load_voc_instances(root, "test", CLASSES)


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<annotation></annotation>", "annotation has no <size>"),
        (
            "<annotation><size><width>0</width><height>5</height></size></annotation>",
            "must be positive integers",
        ),
        (
            "<annotation><size><width>9</width><height>5</height></size><object><name>cat"
            "</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>2</xmax><ymax>3</ymax></bndbox>"
            "</object></annotation>",
            "object 0 <xmin> is not a number: 'a'",
        ),
        (
            "<annotation><size><width>9</width><height>5</height></size><object><name>cow"
            "</name></object></annotation>",
            "object 0 has class 'cow', not in class_names",
        ),
        (
            "<annotation><size><width>9</width><height>5</height></size><object><name>cat"
            "</name></object></annotation>",
            "object 0 has no <bndbox>",
        ),
    ],
)
def test_bad_xml_content_is_a_clear_error(tmp_path, xml: str, message: str) -> None:
    path = tmp_path / "x.xml"
    path.write_text(xml)
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}: .*{re.escape(message)}"):
        read_voc_xml(str(path), CLASSES)


def test_missing_split_file_names_path_and_layout(tmp_path) -> None:
    expected = os.path.join(str(tmp_path), "ImageSets", "Main", "val.txt")
    with pytest.raises(
        FileNotFoundError, match=f"{re.escape(expected)}: VOC split file not found"
    ) as err:
        load_voc_instances(str(tmp_path), "val", CLASSES)
    assert "Annotations/<id>.xml, JPEGImages/<id>.jpg" in str(err.value)


def test_missing_xml_names_the_path(tmp_path) -> None:
    root = write_voc_folder(tmp_path, {"a": (10, 10, [])})
    os.remove(os.path.join(root, "Annotations", "a.xml"))
    with pytest.raises(FileNotFoundError, match="a.xml: VOC annotation not found"):
        load_voc_instances(root, "test", CLASSES)


def test_register_pascal_voc_is_lazy_and_sets_metadata(tmp_path) -> None:
    name = f"voc_handmade_{tmp_path.name}"
    root = write_voc_folder(tmp_path / "VOC2012", {"a": (20, 30, [("dog", [1, 1, 10, 10], 0)])})
    register_pascal_voc(name, root, "test", 2012, CLASSES)
    try:
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "pascal_voc" and meta.year == 2012
        assert meta.thing_classes == ["cat", "dog"] and meta.split == "test"
        assert meta.dirname == os.path.abspath(root)
        (record,) = DatasetCatalog.get(name)
        np.testing.assert_array_equal(record["boxes"], [[0, 0, 10, 10]])
        np.testing.assert_array_equal(record["classes"], [1])
    finally:
        unregister(name)
