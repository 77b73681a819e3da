"""VisDrone-DET -> COCO json converter, on a hand-written two-image sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sniper.data.coco import load_coco_json
from sniper.data.visdrone import VISDRONE_CLASSES, convert_visdrone_to_coco, main

ALL = list(range(1, 11))


def _sample(tmp_path):
    images, anns = tmp_path / "images", tmp_path / "annotations"
    images.mkdir()
    anns.mkdir()
    Image.new("RGB", (20, 10), (255, 0, 0)).save(images / "0000001_a.jpg")
    Image.new("RGB", (8, 6), (0, 255, 0)).save(images / "0000002_b.png")
    (images / "notes.txt").write_text("not an image")
    (anns / "0000001_a.txt").write_text(
        "1,2,3,4,1,4,0,0\n"  # car
        "0,0,5,5,0,0,0,0\n"  # ignored region -> crowd in every class
        "5,5,2,2,0,1,0,1\n"  # pedestrian with score 0 -> crowd pedestrian
        "3,3,4,4,0,11,0,0,\n"  # others (trailing comma) -> crowd in every class
    )
    (anns / "0000002_b.txt").write_text("\n2,1,3,2,1,10,1,2\n")  # blank line, then a motor
    return str(images), str(anns)


def _expected():
    def ann(i, img, cat, bbox, crowd):
        return {
            "id": i,
            "image_id": img,
            "category_id": cat,
            "bbox": bbox,
            "area": bbox[2] * bbox[3],
            "iscrowd": crowd,
        }

    anns = [ann(1, 1, 4, [1.0, 2.0, 3.0, 4.0], 0)]
    anns += [ann(2 + k, 1, c, [0.0, 0.0, 5.0, 5.0], 1) for k, c in enumerate(ALL)]
    anns += [ann(12, 1, 1, [5.0, 5.0, 2.0, 2.0], 1)]
    anns += [ann(13 + k, 1, c, [3.0, 3.0, 4.0, 4.0], 1) for k, c in enumerate(ALL)]
    anns += [ann(23, 2, 10, [2.0, 1.0, 3.0, 2.0], 0)]
    names = [
        "pedestrian",
        "people",
        "bicycle",
        "car",
        "van",
        "truck",
        "tricycle",
        "awning-tricycle",
        "bus",
        "motor",
    ]
    return {
        "info": {"description": "VisDrone-DET converted by sniper.data.visdrone"},
        "licenses": [],
        "images": [
            {"id": 1, "file_name": "0000001_a.jpg", "height": 10, "width": 20},
            {"id": 2, "file_name": "0000002_b.png", "height": 6, "width": 8},
        ],
        "annotations": anns,
        "categories": [
            {"id": i, "name": n, "supercategory": "none"} for i, n in enumerate(names, start=1)
        ],
    }


STATS = {
    "images": 2,
    "annotations": 23,
    "boxes": 2,
    "crowd_annotations": 21,
    "ignore_regions": 2,
    "ignored_score_zero": 1,
    "orphan_annotation_files": 0,
}


def test_convert_exact_json(tmp_path):
    image_dir, ann_dir = _sample(tmp_path)
    out = tmp_path / "out" / "train.json"
    stats = convert_visdrone_to_coco(image_dir, ann_dir, str(out))
    assert stats == STATS
    assert json.loads(out.read_text()) == _expected()
    assert os.listdir(out.parent) == ["train.json"]  # no temporary file left
    assert len(VISDRONE_CLASSES) == 10


def test_converted_json_loads_with_ignore_regions(tmp_path):
    image_dir, ann_dir = _sample(tmp_path)
    out = str(tmp_path / "train.json")
    convert_visdrone_to_coco(image_dir, ann_dir, out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is dropped
        a, b = load_coco_json(out, image_dir)
    np.testing.assert_array_equal(a["boxes"], [[1, 2, 4, 6]])
    np.testing.assert_array_equal(a["classes"], [3])  # car: COCO id 4 -> contiguous 3
    np.testing.assert_array_equal(
        a["crowd_boxes"], [[0, 0, 5, 5]] * 10 + [[5, 5, 7, 7]] + [[3, 3, 7, 7]] * 10
    )
    np.testing.assert_array_equal(b["boxes"], [[2, 1, 5, 3]])
    np.testing.assert_array_equal(b["classes"], [9])  # motor
    assert b["crowd_boxes"].shape == (0, 4)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,2,3,4,1,4,0", "expected 8 comma-separated fields, got 7"),
        ("1,2,3,4,1,4,0,0,0", "expected 8 comma-separated fields, got 9"),
        ("1,2,x,4,1,4,0,0", "fields must be integers"),
        ("1,2,3,4,1,12,0,0", "object_category 12 is outside 0..11"),
        ("1,2,3,4,0.7,4,0,0", "fields must be integers"),
        ("1,2,3,4,2,4,0,0", "score 2 is not 0 or 1"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    image_dir, ann_dir = _sample(tmp_path)
    txt = os.path.join(ann_dir, "0000002_b.txt")
    with open(txt, "w") as f:
        f.write(f"2,1,3,2,1,10,1,2\n{line}\n")
    out = tmp_path / "train.json"
    out.write_text("previous")
    with pytest.raises(ValueError, match=f"{txt}:2: {message}"):
        convert_visdrone_to_coco(image_dir, ann_dir, str(out))
    assert out.read_text() == "previous"  # untouched
    assert sorted(os.listdir(tmp_path)) == ["annotations", "images", "train.json"]


def test_missing_txt_is_an_error_and_orphan_txt_is_skipped(tmp_path):
    image_dir, ann_dir = _sample(tmp_path)
    (tmp_path / "annotations" / "0000009_z.txt").write_text("1,1,2,2,1,1,0,0\n")
    with pytest.warns(UserWarning, match="1 annotation file.*0000009_z.txt"):
        stats = convert_visdrone_to_coco(image_dir, ann_dir, str(tmp_path / "o.json"))
    assert stats == {**STATS, "orphan_annotation_files": 1}
    os.remove(os.path.join(ann_dir, "0000002_b.txt"))
    with pytest.raises(FileNotFoundError, match="0000002_b.txt for image 0000002_b.png"):
        convert_visdrone_to_coco(image_dir, ann_dir, str(tmp_path / "o2.json"))


def test_cli(tmp_path, capsys):
    image_dir, ann_dir = _sample(tmp_path)
    out = str(tmp_path / "cli.json")
    assert main([image_dir, ann_dir, out]) == 0
    assert json.loads(capsys.readouterr().out) == STATS
    assert json.loads(Path(out).read_text()) == _expected()


def test_cli_module_entry_point(tmp_path):
    image_dir, ann_dir = _sample(tmp_path)
    out = str(tmp_path / "module.json")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [os.path.join(root, "projects", "sniper"), root, os.environ.get("PYTHONPATH", "")]
        ),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "sniper.data.visdrone", image_dir, ann_dir, out],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == STATS
    assert json.loads(Path(out).read_text()) == _expected()


def test_cli_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "no_images"
    assert main([str(missing), str(tmp_path), str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {missing}: No such file or directory\n"
    assert not (tmp_path / "out.json").exists()
