"""Masks through the engine: inference_on_dataset hands an engine's ``masks`` to
COCOEvaluator, and ``--eval-only`` writes segm beside bbox in metrics.json and the log."""

from __future__ import annotations

import json

import pytest
import torch
from engine_fakes import TinyTrainer, make_cfg, restore_loggers, unregister
from segm_fakes import SIZES, box_mask, coco_json, engine, gt_masks, register
from torch import nn

from sniper.config import load_config_or_exit
from sniper.engine import SniperTrainer
from sniper.engine.defaults import default_argument_parser, run_train_net
from sniper.engine.evaluation import COCOEvaluator, inference_on_dataset


@pytest.fixture()
def dataset(tmp_path):
    """(name, records, json file) of the masked dataset (`segm_fakes`), unregistered after."""
    name = f"segm_{tmp_path.name}"
    yield register(tmp_path, coco_json(), name)
    unregister(name)


def test_inference_on_dataset_passes_masks_to_the_evaluator(dataset, tmp_path):
    name, records, _ = dataset
    masks = gt_masks()
    masks[0] = box_mask(*SIZES[0], 20, 20, 8, 8)  # as in the hand-made case
    res = inference_on_dataset(engine(masks), records, COCOEvaluator(name))
    assert res["bbox"]["AP"] == pytest.approx(100.0)
    assert res["segm"]["AP-b"] == pytest.approx(100.0)
    assert res["segm"]["AP-a"] < 100.0
    assert res["speed"]["images"] == 2


def test_eval_only_metrics_json_holds_segm_beside_bbox(dataset, tmp_path):
    name, _, _ = dataset

    class Oracle(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

    class OracleTrainer(SniperTrainer):
        @classmethod
        def build_model(cls, cfg):
            return Oracle()

        @classmethod
        def build_inference(cls, cfg, model):
            return engine(gt_masks())

    weights = tmp_path / "oracle.pth"
    torch.save({"dummy": torch.zeros(1)}, weights)
    out = tmp_path / "out"
    argv = ["--eval-only", "MODEL.NUM_CLASSES", "2", "MODEL.WEIGHTS", str(weights)]
    argv += ["OUTPUT_DIR", str(out), "DATASETS.TEST", f"('{name}',)"]
    with restore_loggers():
        results = run_train_net(
            default_argument_parser().parse_args(argv), OracleTrainer, load_config_or_exit
        )
    record = json.loads((out / "metrics.json").read_text().splitlines()[-1])
    for task in ("bbox", "segm"):
        for key in ("AP", "AP50", "AP75", "AP-a", "AP-b"):
            assert record[f"{name}/{task}/{key}"] == pytest.approx(100.0), (task, key)
    assert results[name]["segm"]["AP"] == pytest.approx(100.0)
    log = (out / "log.txt").read_text()
    assert f"COCO segm of {name}: AP 100.000" in log
    written = json.loads((out / "inference" / name / "coco_instances_results.json").read_text())
    assert len(written) == 4 and all("segmentation" in d for d in written)


def test_training_evaluation_writes_segm_to_metrics_json(dataset, tmp_path):
    """The periodic and final evaluations of a training run (TinyDetector trained, the fake
    engine evaluated) log segm beside bbox in metrics.json."""
    name, _, _ = dataset

    class MaskEngineTrainer(TinyTrainer):
        @classmethod
        def build_inference(cls, cfg, model):
            return engine(gt_masks())

    out = tmp_path / "out"
    cfg = make_cfg(
        out, "DATASETS.TEST", f"('{name}',)", "TEST.EVAL_PERIOD", 3, "MODEL.NUM_CLASSES", 2
    )
    results = MaskEngineTrainer(cfg).train()
    assert results[name]["segm"]["AP"] == pytest.approx(100.0)
    lines = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
    evals = [x for x in lines if f"{name}/segm/AP" in x]
    assert [x["iteration"] for x in evals] == [2, 5]
    assert all(x[f"{name}/segm/AP"] == pytest.approx(100.0) for x in evals)
    assert all(f"{name}/bbox/AP" in x for x in evals)
