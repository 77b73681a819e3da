"""Pascal VOC AP on hand-made detections, computed by hand (both metrics), and the choice
of evaluator by the dataset's metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_fakes import make_cfg, unregister
from voc_fakes import write_voc_folder

from sniper.data.catalog import DatasetCatalog, MetadataCatalog
from sniper.data.voc import register_pascal_voc
from sniper.engine import SniperTrainer
from sniper.engine.evaluation import COCOEvaluator, build_evaluator, inference_on_dataset
from sniper.engine.voc_evaluation import PascalVOCEvaluator, voc_ap, voc_class_ap

CLASSES = ("cat", "dog")
# VOC 1-based inclusive coordinates; in the records (x1 - 1, y1 - 1, x2, y2).
IMAGES = {
    "a": (
        100,
        100,
        [
            ("cat", [11, 11, 50, 50], 0),  # (10, 10, 50, 50)
            ("cat", [61, 61, 80, 80], 1),  # difficult (60, 60, 80, 80)
            ("dog", [1, 1, 30, 30], 0),  # (0, 0, 30, 30)
        ],
    ),
    "b": (100, 100, [("cat", [21, 21, 60, 60], 0)]),  # (20, 20, 60, 60)
}
# (image, class, score, XYXY box in the records' frame)
DETECTIONS = [
    ("a", 0, 0.9, [10, 10, 50, 50]),  # TP
    ("a", 0, 0.8, [60, 60, 80, 80]),  # on the difficult box: ignored
    ("b", 0, 0.7, [0, 0, 10, 10]),  # FP
    ("a", 0, 0.6, [10, 10, 50, 50]),  # duplicate: FP
    ("b", 0, 0.5, [20, 20, 60, 60]),  # TP
    ("a", 1, 0.9, [0, 0, 30, 25]),  # IoU 750/900 = 0.833: TP at t <= 0.8, FP above
    ("b", 1, 0.3, [50, 50, 70, 70]),  # FP
]
# cat: recall .5 .5 .5 .5 1, precision 1 1 .5 1/3 .5 at every threshold:
#   area = 0.5 * 1 + 0.5 * 0.5 = 0.75; 11-point = (6 * 1 + 5 * 0.5) / 11 = 8.5 / 11
# dog: AP 1 at the 7 thresholds 0.50..0.80, 0 at 0.85, 0.90, 0.95 (both metrics)
CAT_AREA, CAT_11 = 0.75, 8.5 / 11
DOG_MEAN = 0.7


def test_voc_ap_area_and_11_point_by_hand() -> None:
    recall = np.array([0.5, 0.5, 0.5, 0.5, 1.0])
    precision = np.array([1.0, 1.0, 0.5, 1 / 3, 0.5])
    assert voc_ap(recall, precision, use_07_metric=False) == pytest.approx(0.75)
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx(8.5 / 11)
    # recall never reaches 0.25: the area stops there, 11-point counts r = 0, 0.1, 0.2
    r, p = np.array([0.25]), np.array([0.8])
    assert voc_ap(r, p, use_07_metric=False) == pytest.approx(0.2)
    assert voc_ap(r, p, use_07_metric=True) == pytest.approx(3 * 0.8 / 11)


def test_difficult_boxes_are_neither_counted_nor_penalized() -> None:
    gt = {0: np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)}
    hard = {0: np.array([False, True])}
    dets = [(0, 0.9, np.array([20, 20, 30, 30])), (0, 0.8, np.array([0, 0, 10, 10]))]
    # the first detection hits the difficult box: ignored (no FP); the second is the one TP
    assert voc_class_ap(dets, gt, hard, 0.5, use_07_metric=False) == pytest.approx(1.0)
    # the difficult box is not counted: one TP gives recall 1, not 1/2 (area 0.5)
    one = [(0, 0.8, np.array([0, 0, 10, 10]))]
    assert voc_class_ap(one, gt, hard, 0.5, False) == pytest.approx(1.0)
    assert voc_class_ap(one, gt, {0: np.array([False, False])}, 0.5, False) == 0.5
    # a class without non-difficult GT has no AP
    assert np.isnan(voc_class_ap(dets, gt, {0: np.array([True, True])}, 0.5, False))


def test_iou_must_exceed_the_threshold() -> None:
    gt, hard = {0: np.array([[0, 0, 10, 10]], float)}, {0: np.array([False])}
    half = [(0, 1.0, np.array([0, 0, 10, 5]))]  # IoU exactly 0.5
    assert voc_class_ap(half, gt, hard, 0.5, False) == 0.0
    assert voc_class_ap(half, gt, hard, 0.45, False) == 1.0


@pytest.fixture()
def voc_dataset(tmp_path, request):
    year = request.param
    name = f"voc_eval_{year}_{tmp_path.name}"
    root = write_voc_folder(tmp_path / f"VOC{year}", IMAGES)
    register_pascal_voc(name, root, "test", year, CLASSES)
    yield name, DatasetCatalog.get(name)
    unregister(name)


def _outputs(records: list[dict]) -> list[dict[str, torch.Tensor]]:
    outputs = []
    for record in records:
        mine = [d for d in DETECTIONS if d[0] == record["file_id"]]
        outputs.append(
            {
                "boxes": torch.tensor([d[3] for d in mine], dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor([d[2] for d in mine]),
                "labels": torch.tensor([d[1] + 1 for d in mine], dtype=torch.int64),
            }
        )
    return outputs


@pytest.mark.parametrize(
    ("voc_dataset", "cat_ap"), [(2007, CAT_11), (2012, CAT_AREA)], indirect=["voc_dataset"]
)
def test_voc_evaluator_by_hand(tmp_path, voc_dataset, cat_ap) -> None:
    name, records = voc_dataset
    evaluator = build_evaluator(make_cfg(tmp_path / "out"), name)
    assert isinstance(evaluator, PascalVOCEvaluator)
    assert evaluator.use_07_metric == (MetadataCatalog.get(name).year == 2007)
    evaluator.process(records, _outputs(records))
    res = evaluator.evaluate()["bbox"]
    assert res["AP50-cat"] == pytest.approx(100 * cat_ap)
    assert res["AP50-dog"] == pytest.approx(100.0)
    assert res["AP50"] == pytest.approx(100 * (cat_ap + 1) / 2)
    assert res["AP75"] == pytest.approx(100 * (cat_ap + 1) / 2)
    assert res["AP"] == pytest.approx(100 * (cat_ap + DOG_MEAN) / 2)
    assert set(res) == {"AP", "AP50", "AP75", "AP50-cat", "AP50-dog"}
    evaluator.reset()
    evaluator.process(records, [_empty()] * len(records))
    assert evaluator.evaluate()["bbox"]["AP"] == 0.0


def _empty() -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.int64),
    }


@pytest.mark.parametrize("voc_dataset", [2007], indirect=True)
def test_trainer_builds_the_voc_evaluator(tmp_path, voc_dataset) -> None:
    name, _ = voc_dataset
    cfg = make_cfg(tmp_path / "out")
    assert isinstance(SniperTrainer.build_evaluator(cfg, name), PascalVOCEvaluator)


def test_coco_and_unknown_evaluator_types(tmp_path) -> None:
    cfg = make_cfg(tmp_path, "TEST.MAX_DETS_PER_IMAGE", 150)
    name = f"typed_{tmp_path.name}"
    MetadataCatalog.get(name).set(
        json_file="x.json", thing_dataset_id_to_contiguous_id={1: 0}, evaluator_type="coco"
    )
    try:
        coco = build_evaluator(cfg, name)
        assert isinstance(coco, COCOEvaluator) and coco.max_dets_per_image == 150
    finally:
        MetadataCatalog.remove(name)
    MetadataCatalog.get(name).set(evaluator_type="lvis")
    try:
        with pytest.raises(ValueError, match=f"dataset '{name}': .*evaluator_type = 'lvis'"):
            build_evaluator(cfg, name)
    finally:
        MetadataCatalog.remove(name)


def test_records_without_difficult_classes_are_refused(tmp_path) -> None:
    name = f"voc_bad_{tmp_path.name}"
    MetadataCatalog.get(name).set(thing_classes=["cat"], year=2012)
    try:
        evaluator = PascalVOCEvaluator(name)
        record = {"file_name": "x.jpg", "boxes": np.zeros((0, 4)), "classes": np.zeros(0)}
        with pytest.raises(ValueError, match="x.jpg has no 'crowd_classes'"):
            evaluator.process([record], [_empty()])
    finally:
        MetadataCatalog.remove(name)


@pytest.mark.parametrize("voc_dataset", [2012], indirect=True)
def test_inference_on_dataset_with_the_voc_evaluator(tmp_path, voc_dataset) -> None:
    """The trainer's path: images read from the records' files, detections (classes
    0..C-1) of an engine, the evaluator picked by the metadata."""
    name, records = voc_dataset
    outputs = iter(_outputs(records))

    def engine(images: list[np.ndarray]) -> list[dict]:
        assert images[0].shape == (100, 100, 3)
        out = next(outputs)
        classes = out["labels"].numpy() - 1
        return [
            {
                "boxes": out["boxes"].numpy(),
                "scores": out["scores"].numpy(),
                "classes": classes,
                "pixels": 100 * 100,
            }
        ]

    evaluator = build_evaluator(make_cfg(tmp_path / "out"), name)
    res = inference_on_dataset(engine, records, evaluator)
    assert res["bbox"]["AP50"] == pytest.approx(100 * (CAT_AREA + 1) / 2)
    assert res["speed"]["input_pixels"] == 2 * 100 * 100


@pytest.mark.parametrize("voc_dataset", [2012], indirect=True)
def test_voc_evaluator_warns_about_images_above_the_merge_cap(tmp_path, voc_dataset) -> None:
    name, records = voc_dataset  # image "a" holds 2 boxes (the difficult one is not counted)
    cfg = make_cfg(tmp_path / "out", "SNIPER.DETECTIONS_PER_IMAGE", 1, "TEST.MAX_DETS_PER_IMAGE", 1)
    evaluator = build_evaluator(cfg, name)
    assert evaluator.detections_cap == 1
    with pytest.warns(UserWarning, match=r"holds 2 GT boxes .* \(SNIPER.DETECTIONS_PER_IMAGE\)"):
        evaluator.process(records, [_empty()] * len(records))
