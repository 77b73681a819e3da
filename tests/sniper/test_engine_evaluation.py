"""COCOEvaluator and inference_on_dataset against pycocotools run by hand."""

from __future__ import annotations

import contextlib
import io
import json
import os

import cv2
import numpy as np
import pytest
import torch
from engine_fakes import unregister, write_coco_dataset
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from sniper.data.catalog import MetadataCatalog
from sniper.data.coco import load_coco_json
from sniper.engine.evaluation import COCOEvaluator, inference_on_dataset
from sniper.inference import MultiScaleInference

SIZES = [(100, 120), (80, 90)]
# ([x, y, w, h], category index): areas 1600, 900 (small), 2500, 1800
GT = {
    0: [([10, 10, 40, 40], 0), ([50, 20, 30, 30], 1)],
    1: [([5, 5, 50, 50], 0), ([30, 30, 40, 45], 0)],
}


@pytest.fixture()
def dataset(tmp_path):
    name = f"engine_coco_{tmp_path.name}"
    records = write_coco_dataset(tmp_path / "data", name, SIZES, GT)
    yield name, records
    unregister(name)


def _perfect(skip: set[tuple[int, int]] = frozenset()) -> list[dict[str, torch.Tensor]]:
    """Detections equal to the GT (XYXY, labels 1..C), leaving out (image, box) in `skip`."""
    outputs = []
    for i in range(len(SIZES)):
        kept = [(b, c) for j, (b, c) in enumerate(GT[i]) if (i, j) not in skip]
        boxes = torch.tensor([[x, y, x + w, y + h] for (x, y, w, h), _ in kept]).reshape(-1, 4)
        outputs.append(
            {
                "boxes": boxes.float(),
                "scores": torch.linspace(0.9, 0.5, len(kept)),
                "labels": torch.tensor([c + 1 for _, c in kept], dtype=torch.int64),
            }
        )
    return outputs


def _by_hand(json_file: str, results_file: str) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json_file)
        ev = COCOeval(gt, gt.loadRes(results_file), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) * 100 if v >= 0 else float("nan") for v in ev.stats[:6]]


def test_perfect_detections_give_100(dataset, tmp_path):
    name, records = dataset
    evaluator = COCOEvaluator(name, str(tmp_path / "out"))
    evaluator.process(records, _perfect())
    res = evaluator.evaluate()["bbox"]
    for key in ("AP", "AP50", "AP75", "APs", "APm", "AP-a", "AP-b"):
        assert res[key] == pytest.approx(100.0), key
    assert res["APl"] != res["APl"]  # NaN: no large GT box
    written = json.loads((tmp_path / "out" / "coco_instances_results.json").read_text())
    assert {d["category_id"] for d in written} == {5, 7}  # contiguous ids mapped back
    first = next(d for d in written if d["image_id"] == 10 and d["category_id"] == 5)
    assert first["bbox"] == pytest.approx([10, 10, 40, 40])


def test_one_missing_detection_known_value(dataset, tmp_path):
    name, records = dataset
    evaluator = COCOEvaluator(name, str(tmp_path / "out"))
    evaluator.process(records, _perfect(skip={(1, 1)}))
    res = evaluator.evaluate()["bbox"]
    # class a: recall 2/3 at precision 1 -> 67 of COCO's 101 recall points; class b: 100
    ap_a = 100 * 67 / 101
    assert res["AP-a"] == pytest.approx(ap_a)
    assert res["AP-b"] == pytest.approx(100.0)
    assert res["AP"] == pytest.approx((ap_a + 100) / 2)
    json_file = MetadataCatalog.get(name).json_file
    hand = _by_hand(json_file, str(tmp_path / "out" / "coco_instances_results.json"))
    ours = [res[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")]
    assert ours == pytest.approx(hand, nan_ok=True)


def test_no_detections_give_zero(dataset):
    name, records = dataset
    evaluator = COCOEvaluator(name)
    empty = {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.int64),
    }
    evaluator.process(records, [empty, empty])
    res = evaluator.evaluate()["bbox"]
    assert res["AP"] == 0.0 and res["AP-a"] == 0.0


class _Oracle(nn.Module):
    """Returns the GT of the image it recognizes by its gray level, in input pixels."""

    def __init__(self, levels: dict[int, int]) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.levels = levels
        self.input_sizes: list[tuple[int, int]] = []

    def forward(self, images):
        assert not self.training
        out = []
        for img in images:
            i = self.levels[int(img[0, 0, 0])]
            h, w = SIZES[i]
            self.input_sizes.append(tuple(img.shape[-2:]))
            fy, fx = img.shape[-2] / h, img.shape[-1] / w
            det = _perfect()[i]
            det["boxes"] = det["boxes"] * torch.tensor([fx, fy, fx, fy])
            out.append(det)
        return out


@pytest.mark.parametrize("scale", [1.0, 0.5, (40.0, 1000.0)])
def test_inference_maps_boxes_back(dataset, tmp_path, scale):
    name, records = dataset
    levels = {}
    for i, record in enumerate(records):  # give each image its own gray level
        level = 60 + 50 * i
        cv2.imwrite(record["file_name"], np.full((*SIZES[i], 3), level, np.uint8))
        levels[level] = i
    model = _Oracle(levels).train()
    inference = MultiScaleInference(model, [scale], [(-1, -1)], merge="nms")
    res = inference_on_dataset(inference, records, COCOEvaluator(name, str(tmp_path)))
    assert model.training  # mode restored
    assert res["bbox"]["AP"] == pytest.approx(100.0)
    if scale == 0.5:
        assert model.input_sizes == [(50, 60), (40, 45)]
    if isinstance(scale, tuple):
        assert [min(s) for s in model.input_sizes] == [40, 40]
    assert res["speed"]["images"] == 2
    assert res["speed"]["input_pixels"] == sum(h * w for h, w in model.input_sizes)
    assert res["speed"]["pixels_scale0"] == res["speed"]["input_pixels"]
    assert res["speed"]["images_per_s"] > 0
    assert os.path.isfile(tmp_path / "coco_instances_results.json")


def test_json_without_areas_is_scored_with_box_areas(dataset, tmp_path):
    name, _ = dataset
    meta = MetadataCatalog.get(name)
    data = json.loads(open(meta.json_file).read())
    for ann in data["annotations"]:
        del ann["area"]
        del ann["iscrowd"]
    bare = tmp_path / "no_area.json"
    bare.write_text(json.dumps(data))
    records = load_coco_json(str(bare), meta.image_root)
    evaluator = COCOEvaluator(name)
    evaluator.process(records, _perfect(skip={(0, 1)}))
    res = evaluator.evaluate()["bbox"]
    # the one missed box is the only small one (30 x 30 = 900 px): APs 0, APm 100
    assert res["APs"] == pytest.approx(0.0) and res["APm"] == pytest.approx(100.0)


def _write(path, data) -> str:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return str(path)


def test_boxes_the_loader_drops_are_not_ground_truth(dataset, tmp_path):
    """Perfect detections of the kept boxes score 100 although the json holds boxes the
    loader drops (outside the image, NaN, negative size); a box crossing the border is
    scored in its clipped form."""
    name, _ = dataset
    meta = MetadataCatalog.get(name)
    data = json.loads(open(meta.json_file).read())
    extra = [[500, 500, 10, 10], [float("nan"), 1, 5, 5], [20, 20, -5, 10]]
    for k, bbox in enumerate(extra):
        data["annotations"].append(
            {"id": 100 + k, "image_id": 10, "category_id": 5, "bbox": bbox, "iscrowd": 0}
        )
    # crosses the right edge of image 11 (90 px wide): clipped to [60, 40, 90, 60]
    data["annotations"].append(
        {"id": 200, "image_id": 11, "category_id": 7, "bbox": [60, 40, 50, 20], "iscrowd": 0}
    )
    with pytest.warns(UserWarning, match=r"dropped 1 \(non-finite bbox\), 1 \(non-positive"):
        records = load_coco_json(_write(tmp_path / "dirty.json", data), meta.image_root)
    outputs = _perfect()
    outputs[1]["boxes"] = torch.cat([outputs[1]["boxes"], torch.tensor([[60.0, 40, 90, 60]])])
    outputs[1]["scores"] = torch.cat([outputs[1]["scores"], torch.tensor([0.3])])
    outputs[1]["labels"] = torch.cat([outputs[1]["labels"], torch.tensor([2])])
    evaluator = COCOEvaluator(name)
    evaluator.process(records, outputs)
    res = evaluator.evaluate()["bbox"]
    for key in ("AP", "AP50", "AP75", "AP-a", "AP-b"):
        assert res[key] == pytest.approx(100.0), key


def test_crowd_region_ignores_detections_of_its_class_only(dataset, tmp_path):
    name, _ = dataset
    meta = MetadataCatalog.get(name)
    data = json.loads(open(meta.json_file).read())
    data["annotations"].append(
        {"id": 300, "image_id": 11, "category_id": 5, "bbox": [0, 60, 40, 20], "iscrowd": 1}
    )
    records = load_coco_json(_write(tmp_path / "crowd.json", data), meta.image_root)
    assert records[1]["crowd_classes"].tolist() == [0]
    outputs = _perfect()
    # a low-scored class-a detection inside the crowd region: ignored, AP-a stays 100
    outputs[1]["boxes"] = torch.cat([outputs[1]["boxes"], torch.tensor([[2.0, 62, 38, 78]])])
    outputs[1]["scores"] = torch.cat([outputs[1]["scores"], torch.tensor([0.1])])
    outputs[1]["labels"] = torch.cat([outputs[1]["labels"], torch.tensor([1])])
    evaluator = COCOEvaluator(name)
    evaluator.process(records, outputs)
    assert evaluator.evaluate()["bbox"]["AP-a"] == pytest.approx(100.0)


def test_a_label_beyond_the_categories_names_num_classes(dataset):
    name, records = dataset
    outputs = _perfect()
    outputs[0]["labels"] = torch.tensor([1, 8])
    with pytest.raises(ValueError, match=r"predicted label 8 but the dataset has 2 categor"):
        COCOEvaluator(name).process(records, outputs)


def _gray_images(records) -> dict[int, int]:
    levels = {}
    for i, record in enumerate(records):
        level = 60 + 50 * i
        cv2.imwrite(record["file_name"], np.full((*SIZES[i], 3), level, np.uint8))
        levels[level] = i
    return levels


@pytest.mark.parametrize("damage", ["corrupt", "missing", "resized"])
def test_unusable_test_image_is_skipped_and_counted(dataset, tmp_path, caplog, damage):
    name, records = dataset
    model = _Oracle(_gray_images(records)).eval()
    path = records[1]["file_name"]
    if damage == "corrupt":
        with open(path, "wb") as f:
            f.write(b"not an image")
    elif damage == "missing":
        os.remove(path)
    else:
        cv2.imwrite(path, np.full((40, 45, 3), 110, np.uint8))
    inference = MultiScaleInference(model, [1.0], [(-1, -1)], merge="nms")
    with caplog.at_level("WARNING", logger="sniper.engine.evaluation"):
        res = inference_on_dataset(inference, records, COCOEvaluator(name))
    assert res["speed"]["images"] == 1 and res["speed"]["skipped_images"] == 1
    # image 11's ground truth is left out with it: image 10 alone, detected perfectly
    assert res["bbox"]["AP"] == pytest.approx(100.0)
    assert "skipping image 11" in caplog.text
    assert "1 images skipped" in caplog.text
    if damage == "resized":
        assert "it is 40x45 (HxW) but its record says 80x90" in caplog.text


def test_evaluation_reports_progress_in_the_log(dataset, caplog):
    name, records = dataset
    model = _Oracle(_gray_images(records)).eval()
    inference = MultiScaleInference(model, [1.0], [(-1, -1)], merge="nms")
    with caplog.at_level("INFO", logger="sniper.progress"):
        inference_on_dataset(inference, records, COCOEvaluator(name))
    lines = [r.getMessage() for r in caplog.records if r.name == "sniper.progress"]
    assert len(lines) == 1 and lines[0].startswith(f"evaluate {name}: 2/2 images (100.0%), ")
