"""COCOEvaluator's mask AP (``segm``): exact values by hand and by pycocotools run
directly on the raw json, crowd regions, boxes without a mask, the results json."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from engine_fakes import unregister, write_coco_dataset
from pycocotools.coco import COCO
from segm_fakes import (
    ANNS,
    SIZES,
    box_mask,
    by_hand,
    coco_json,
    detections,
    gt_masks,
    register,
    to_rle,
)

from sniper.engine.evaluation import METRICS, COCOEvaluator


@pytest.fixture()
def names():
    """Datasets a test registers (append their names), unregistered after it."""
    registered: list[str] = []
    yield registered
    for name in registered:
        unregister(name)


@pytest.fixture()
def dataset(tmp_path, names):
    """(name, records, json file) of the masked dataset (`segm_fakes`)."""
    names.append(f"segm_{tmp_path.name}")
    return register(tmp_path, coco_json(), names[-1])


def test_masks_equal_to_the_ground_truth_give_100(dataset, tmp_path):
    name, records, _ = dataset
    assert records[1]["segmentations"][1] is None  # the box-only annotation
    evaluator = COCOEvaluator(name, str(tmp_path / "out"))
    evaluator.process(records, detections(gt_masks(), [0.9, 0.8, 0.7, 0.6]))
    res = evaluator.evaluate()
    assert set(res) == {"bbox", "segm"}
    for key in ("AP", "AP50", "AP75", "APs", "AP-a", "AP-b"):
        assert res["segm"][key] == pytest.approx(100.0), key
        assert res["bbox"][key] == pytest.approx(100.0), key


def test_hand_made_case_exact_value(dataset):
    """Image 10 alone: the square (10x10) found by an 8x8 mask in its corner (IoU 0.64:
    matched at 0.50, 0.55, 0.60 of the ten thresholds: AP-a 30), the disk exactly (AP-b
    100); the boxes are exact, so box AP is 100."""
    name, records, _ = dataset
    masks = gt_masks()
    masks[0] = box_mask(*SIZES[0], 20, 20, 8, 8)
    evaluator = COCOEvaluator(name)
    evaluator.process(records[:1], detections(masks, [0.9, 0.8, 0, 0], keep=[0, 1])[:1])
    res = evaluator.evaluate()
    assert res["segm"]["AP-a"] == pytest.approx(30.0)
    assert res["segm"]["AP-b"] == pytest.approx(100.0)
    assert res["segm"]["AP"] == pytest.approx(65.0)
    assert res["segm"]["AP50"] == pytest.approx(100.0)
    assert res["segm"]["AP75"] == pytest.approx(50.0)
    assert res["bbox"]["AP"] == pytest.approx(100.0)


@pytest.mark.parametrize("case", ["perturbed", "box_only_missed"])
def test_segm_ap_equals_pycocotools_on_the_rawcoco_json(dataset, tmp_path, case):
    name, records, _ = dataset
    rng = np.random.default_rng(3)
    masks = []
    for m in gt_masks():  # drop ~30% of each object's pixels and add a stray blob
        noisy = m * (rng.random(m.shape) > 0.3)
        noisy[:3, :3] = 1
        masks.append(noisy.astype(np.uint8))
    keep = [0, 1, 2] if case == "box_only_missed" else None
    outputs = detections(masks, [0.5, 0.9, 0.7, 0.8], keep=keep)
    evaluator = COCOEvaluator(name, str(tmp_path / "out"))
    evaluator.process(records, outputs)
    res = evaluator.evaluate()["segm"]
    results = [
        {
            "image_id": 10 + i,
            "category_id": 5 + 2 * (int(c) - 1),
            "segmentation": m,
            "score": float(s),
        }
        for i, out in enumerate(outputs)
        for c, m, s in zip(out["labels"], out["masks"], out["scores"], strict=True)
    ]
    expected = by_hand(coco_json(with_box_polygon=True), results, "segm")
    assert [res[k] for k in METRICS] == pytest.approx(expected, nan_ok=True)
    assert 0 < res["AP"] < 100


def test_crowd_region_ignores_masks_inside_it(tmp_path, names):
    crowd = {"image_id": 11, "category_id": 5, "bbox": [0, 38, 30, 12], "iscrowd": 1}
    crowd["segmentation"] = [[0, 38, 30, 38, 30, 50, 0, 50]]
    crowd["area"] = 360.0
    name = f"segm_crowd_{tmp_path.name}"
    names.append(name)
    _, records, _ = register(tmp_path, coco_json([crowd]), name)
    assert len(records[1]["crowd_boxes"]) == 1
    outputs = detections(gt_masks(), [0.9, 0.8, 0.7, 0.6])
    # a top-scored class-a mask inside the crowd region: ignored, so AP-a stays 100
    out = outputs[1]
    out["boxes"] = torch.cat([out["boxes"], torch.tensor([[2.0, 40, 28, 48]])])
    out["scores"] = torch.cat([out["scores"], torch.tensor([0.95])])
    out["labels"] = torch.cat([out["labels"], torch.tensor([1])])
    out["masks"] = [*out["masks"], to_rle(box_mask(*SIZES[1], 2, 40, 26, 8))]
    evaluator = COCOEvaluator(name)
    evaluator.process(records, outputs)
    assert evaluator.evaluate()["segm"]["AP-a"] == pytest.approx(100.0)
    # the same mask as class b is a false positive above b's true one
    out["labels"][-1] = 2
    evaluator.reset()
    evaluator.process(records, outputs)
    assert evaluator.evaluate()["segm"]["AP-b"] < 100.0


def test_results_json_holds_rle_that_pycocotools_loads(dataset, tmp_path):
    name, records, json_file = dataset
    masks = gt_masks()
    evaluator = COCOEvaluator(name, str(tmp_path / "out"))
    evaluator.process(records, detections(masks, [0.9, 0.8, 0.7, 0.6]))
    evaluator.evaluate()
    path = str(tmp_path / "out" / "coco_instances_results.json")
    written = json.loads(open(path).read())
    assert all(isinstance(d["segmentation"]["counts"], str) for d in written)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json_file)
        dt = gt.loadRes(path)
    scores = [0.9, 0.8, 0.7, 0.6]  # one per annotation: names the detection's mask
    assert len(dt.dataset["annotations"]) == len(ANNS)
    for ann in dt.dataset["annotations"]:
        k = int(np.argmin(np.abs(np.asarray(scores) - ann["score"])))
        assert ann["image_id"] == 10 + ANNS[k][0]
        np.testing.assert_array_equal(dt.annToMask(ann), masks[k])


def test_cap_names_both_tables(dataset):
    name, records, _ = dataset
    evaluator = COCOEvaluator(name, max_dets_per_image=5)
    evaluator.process(records, detections(gt_masks(), [0.9, 0.8, 0.7, 0.6]))
    assert set(evaluator.evaluate()) == {"bbox@maxDets=5", "segm@maxDets=5"}


def test_masks_without_ground_truth_masks_give_box_ap_only(tmp_path, caplog, names):
    name = f"nomask_{tmp_path.name}"
    names.append(name)
    records = write_coco_dataset(tmp_path / "d", name, [SIZES[0]], {0: [([20, 20, 10, 10], 0)]})
    out = {
        "boxes": torch.tensor([[20.0, 20, 30, 30]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([1]),
        "masks": [to_rle(box_mask(*SIZES[0], 20, 20, 10, 10))],
    }
    evaluator = COCOEvaluator(name)
    evaluator.process(records, [out])
    with caplog.at_level("WARNING", logger="sniper.engine.evaluation"):
        res = evaluator.evaluate()
    assert set(res) == {"bbox"} and res["bbox"]["AP"] == pytest.approx(100.0)
    assert "no 'segmentations'; no mask AP" in caplog.text


def test_bad_masks_are_named(dataset):
    name, records, _ = dataset
    outputs = detections(gt_masks(), [0.9, 0.8, 0.7, 0.6])
    evaluator = COCOEvaluator(name)
    short = dict(outputs[0], masks=outputs[0]["masks"][:1])
    with pytest.raises(ValueError, match=r"image 10: 'masks' must be a list of 2 RLE dicts, got 1"):
        evaluator.process(records[:1], [short])
    wrong = dict(outputs[0], masks=[outputs[1]["masks"][0], outputs[0]["masks"][1]])
    with pytest.raises(
        ValueError, match=r"mask 0 has size \[50, 70\] but the image is .* \[60, 80\]"
    ):
        evaluator.process(records[:1], [wrong])
    arrays = dict(outputs[0], masks=[np.zeros((60, 80)), np.zeros((60, 80))])
    with pytest.raises(ValueError, match=r"mask 0 must be a COCO RLE dict"):
        evaluator.process(records[:1], [arrays])
    evaluator.reset()
    bare = {k: v for k, v in outputs[1].items() if k != "masks"}
    evaluator.process(records, [outputs[0], bare])
    with pytest.raises(ValueError, match=r"1 images had predicted 'masks' and 1 had none"):
        evaluator.evaluate()
