"""Dense scenes: the COCO scoring cap TEST.MAX_DETS_PER_IMAGE, its table name, the warning
on images with more GT boxes than it, and the check of every cap before it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from engine_fakes import unregister, write_coco_dataset

from sniper.config import setup_cfg
from sniper.engine.evaluation import COCOEvaluator, bbox_task_name

VISDRONE = Path(__file__).resolve().parents[2] / "configs" / "sniper" / "visdrone_R50_FPN.yaml"
# one 100x100 image with three small (20x20) boxes of class a
GT = {0: [([0, 0, 20, 20], 0), ([40, 0, 20, 20], 0), ([0, 40, 20, 20], 0)]}


@pytest.fixture()
def dense(tmp_path):
    name = f"dense_{tmp_path.name}"
    records = write_coco_dataset(tmp_path / "data", name, [(100, 100)], GT, ("a",))
    yield name, records
    unregister(name)


def _perfect() -> list[dict[str, torch.Tensor]]:
    boxes = [[x, y, x + w, y + h] for (x, y, w, h), _ in GT[0]]
    return [
        {
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "scores": torch.tensor([0.9, 0.8, 0.7]),
            "labels": torch.ones(3, dtype=torch.int64),
        }
    ]


def test_table_name() -> None:
    assert bbox_task_name(100) == "bbox"
    assert bbox_task_name(500) == "bbox@maxDets=500"


def test_scoring_cap_bounds_recall(dense) -> None:
    name, records = dense
    full = COCOEvaluator(name)
    full.process(records, _perfect())
    assert full.evaluate()["bbox"]["AP"] == pytest.approx(100.0)

    capped = COCOEvaluator(name, max_dets_per_image=2)
    with pytest.warns(UserWarning, match="holds 3 GT boxes but at most 2 detections"):
        capped.process(records, _perfect())
    res = capped.evaluate()
    assert set(res) == {"bbox@maxDets=2"}
    table = res["bbox@maxDets=2"]
    # the best 2 of 3 are scored: recall 2/3 at precision 1 -> 67 of COCO's 101 recall points
    ap = 100 * 67 / 101
    for key in ("AP", "AP50", "AP75", "APs", "AP-a"):
        assert table[key] == pytest.approx(ap), key
    assert table["APm"] != table["APm"] and table["APl"] != table["APl"]  # NaN: no such GT


def test_dense_warning_comes_once(dense) -> None:
    name, records = dense
    with pytest.warns(
        UserWarning, match=r"TEST.MAX_DETS_PER_IMAGE\), so its recall is at most 33%"
    ):
        COCOEvaluator(name, max_dets_per_image=1).process(records, _perfect())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = COCOEvaluator(name, max_dets_per_image=1)
        again.process(records, _perfect())
        again.process(records, _perfect())
        COCOEvaluator(name, max_dets_per_image=3).process(records, _perfect())  # 3 <= 3


def test_bad_scoring_cap_is_refused(dense) -> None:
    with pytest.raises(ValueError, match="max_dets_per_image must be an integer >= 1, got 0"):
        COCOEvaluator(dense[0], max_dets_per_image=0)


@pytest.mark.parametrize(
    ("key", "value", "what"),
    [
        ("MODEL.RPN.POST_NMS_TOPK_TEST", 499, "proposals per network input"),
        ("MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE", 300, "detections per network input"),
        ("SNIPER.DETECTIONS_PER_IMAGE", 200, "detections per image after merging"),
    ],
)
def test_every_cap_is_at_least_the_scoring_cap(key: str, value: int, what: str) -> None:
    opts = [
        "TEST.MAX_DETS_PER_IMAGE",
        "500",
        "MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE",
        "500",
        "SNIPER.DETECTIONS_PER_IMAGE",
        "500",
    ]
    setup_cfg("", opts)  # all caps at 500: fine
    message = (  # setup_cfg names the source of the value first
        f"command line: config key {key} = {value}: {what} must be >= "
        "TEST.MAX_DETS_PER_IMAGE (500), the detections scored per image; "
        f"raise {key} or lower TEST.MAX_DETS_PER_IMAGE"
    )
    with pytest.raises(ValueError) as err:
        setup_cfg("", [*opts, key, str(value)])
    assert str(err.value) == message


def test_unlimited_merge_cap_and_bad_scoring_cap() -> None:
    cfg = setup_cfg("", ["SNIPER.DETECTIONS_PER_IMAGE", "0"])  # <= 0 keeps all
    assert cfg.TEST.MAX_DETS_PER_IMAGE == 100
    with pytest.raises(ValueError, match="TEST.MAX_DETS_PER_IMAGE = 0: must be an integer >= 1"):
        setup_cfg("", ["TEST.MAX_DETS_PER_IMAGE", "0"])


def test_visdrone_config_follows_its_protocol() -> None:
    cfg = setup_cfg(str(VISDRONE), [])
    assert cfg.TEST.MAX_DETS_PER_IMAGE == 500
    assert cfg.SNIPER.DETECTIONS_PER_IMAGE == 500
    assert cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE == 500
    assert cfg.MODEL.RPN.POST_NMS_TOPK_TEST == 1000


def test_scoring_cap_above_ten(tmp_path) -> None:
    """12 boxes, 11 scored: recall 11/12 at precision 1 -> 92 of the 101 recall points
    (r = 0, 0.01, ..., 0.91); with the default cap of 100 all 12 count."""
    name = f"dense12_{tmp_path.name}"
    grid = [([25 * i, 25 * j, 20, 20], 0) for j in range(3) for i in range(4)]
    records = write_coco_dataset(tmp_path / "data", name, [(100, 100)], {0: grid}, ("a",))
    out = {
        "boxes": torch.tensor([[x, y, x + w, y + h] for (x, y, w, h), _ in grid]).float(),
        "scores": torch.linspace(0.9, 0.3, 12),
        "labels": torch.ones(12, dtype=torch.int64),
    }
    try:
        capped = COCOEvaluator(name, max_dets_per_image=11)
        with pytest.warns(UserWarning, match="holds 12 GT boxes"):
            capped.process(records, [out])
        assert capped.evaluate()["bbox@maxDets=11"]["AP"] == pytest.approx(100 * 92 / 101)
        full = COCOEvaluator(name)
        full.process(records, [out])
        assert full.evaluate()["bbox"]["AP"] == pytest.approx(100.0)
    finally:
        unregister(name)
