"""benchmarks/check_sahi_cli.py: SAHI's exported results scored by category *name* against the
evaluation's ground truth, and the SAHI command line it builds."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from bench_fakes import load_benchmark

from sniper.engine.coco_ground_truth import coco_from_ground_truth, record_ground_truth

# contiguous 0 -> dataset id 5 ("cat"), 1 -> id 9 ("dog"): SAHI's category_id (contiguous)
# differs from the dataset's, so only a mapping by name scores right
RECORD = {
    "image_id": 3,
    "height": 100,
    "width": 100,
    "boxes": np.array([[10.0, 10.0, 40.0, 50.0], [60.0, 20.0, 90.0, 80.0]]),
    "classes": np.array([0, 1]),
}


def _gt():
    return coco_from_ground_truth([record_ground_truth(RECORD)], {0: 5, 1: 9}, ["cat", "dog"])


def _result(box, cid, name):
    x1, y1, x2, y2 = box
    return {
        "image_id": 3,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "score": 0.9,
        "category_id": cid,
        "category_name": name,
    }


def test_score_maps_categories_by_name() -> None:
    mod = load_benchmark("check_sahi_cli")
    boxes = RECORD["boxes"].tolist()
    right = [_result(boxes[0], 0, "cat"), _result(boxes[1], 1, "dog")]
    assert mod.score(right, _gt())["AP"] == pytest.approx(100.0)
    swapped = [_result(boxes[0], 0, "dog"), _result(boxes[1], 1, "cat")]
    assert mod.score(swapped, _gt())["AP"] == pytest.approx(0.0)
    assert mod.score([], _gt()) == dict.fromkeys(mod.METRICS, 0.0)
    with pytest.raises(SystemExit, match="'bird'"):
        mod.score([_result(boxes[0], 0, "bird")], _gt())


def test_command_matches_the_benchmark_settings() -> None:
    mod = load_benchmark("check_sahi_cli")
    args = argparse.Namespace(
        config_file="c.yaml", weights="w.pth", output="out", no_standard_prediction=True
    )
    cmd = mod.sahi_command(args, "/imgs", "/imgs/images.json", 2.0)
    assert cmd[1:4] == ["-m", "sniper.integrations.sahi_cli", "predict"]
    for flag in (
        "--image_size=1024",
        "--slice_height=512",
        "--overlap_width_ratio=0.2",
        "--postprocess_match_metric=IOS",
        "--postprocess_match_threshold=0.5",
        "--model_confidence_threshold=0.0",
        "--force_postprocess_type",
        "--no_standard_prediction",
        "--source=/imgs",
        "--model_path=w.pth",
    ):
        assert flag in cmd
