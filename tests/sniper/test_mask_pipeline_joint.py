"""The whole mask path with the real model: synthetic masks -> the mask config's SniperRCNN
-> MultiScaleInference (tiled) -> RLE masks -> COCOEvaluator's segm AP, checked against
pycocotools run directly on the dataset's own json and the written results json."""

from __future__ import annotations

import contextlib
import io
import json
import os

import cv2
import numpy as np
import pytest
import torch
from engine_fakes import unregister
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sniper.config import setup_cfg
from sniper.data.registration import register_coco_instances
from sniper.data.synthetic import SyntheticSplit, build_split
from sniper.engine.evaluation import RESULTS_FILE, COCOEvaluator, inference_on_dataset
from sniper.inference import MultiScaleInference
from sniper.modeling import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


@pytest.fixture()
def dataset(tmp_path):
    json_file, image_root = build_split(
        SyntheticSplit("jm", num_images=2, canvas=320, seed=5), tmp_path
    )
    name = f"mask_joint_{tmp_path.name}"
    register_coco_instances(name, json_file, image_root)
    yield name, json_file
    unregister(name)


def _direct_ap(json_file: str, results: list[dict], iou_type: str) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json_file)
        rows = (
            results
            if iou_type == "bbox"
            else [{k: v for k, v in r.items() if k != "bbox"} for r in results]
        )
        ev = COCOeval(gt, gt.loadRes(rows), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]) * 100


def test_real_mask_model_to_segm_ap(dataset, tmp_path):
    from sniper.data.build import get_records

    name, json_file = dataset
    cfg = setup_cfg(
        os.path.join(ROOT, "configs", "sniper", "synthetic_mobilenet_mask.yaml"),
        [
            "MODEL.WEIGHTS",
            "",
            "MODEL.BACKBONE.WEIGHTS",
            "",
            "SNIPER.TEST_SCALES",
            "[1.0, 0.5]",
            "SNIPER.TEST_VALID_RANGES",
            "[[-1, 60], [40, -1]]",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            "0.0",
            "SNIPER.DETECTIONS_PER_IMAGE",
            "100",
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    # 320 px canvases in 256 px tiles: masks cross the tile seams and the merge
    engine = MultiScaleInference.from_config(cfg, model, max_pixels=256 * 256, tile_size=256)
    records = get_records([name])
    image = np.ascontiguousarray(cv2.imread(records[0]["file_name"])[:, :, ::-1])  # RGB
    out = engine([image])[0]
    assert out["inputs_per_scale"][0] == 4  # tiled
    n = len(out["boxes"])
    assert n > 0 and out["mask_patches"].shape == (n, 28, 28) and len(out["masks"]) == n
    for rle, box in zip(out["masks"], np.asarray(out["boxes"]), strict=True):
        m = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert m.shape == (320, 320)
        ys, xs = np.nonzero(m)
        if len(xs):  # every mask pixel's centre lies inside its box
            assert xs.min() + 0.5 >= box[0] and xs.max() + 0.5 <= box[2]
            assert ys.min() + 0.5 >= box[1] and ys.max() + 0.5 <= box[3]
    evaluator = COCOEvaluator(name, str(tmp_path / "eval"))
    res = inference_on_dataset(engine, records, evaluator)
    assert set(res) == {"bbox", "segm", "speed"}
    with open(tmp_path / "eval" / RESULTS_FILE, encoding="utf-8") as f:
        results = json.load(f)
    assert all("segmentation" in r for r in results)
    assert res["segm"]["AP"] == pytest.approx(_direct_ap(json_file, results, "segm"), abs=1e-6)
    assert res["bbox"]["AP"] == pytest.approx(_direct_ap(json_file, results, "bbox"), abs=1e-6)
