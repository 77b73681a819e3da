"""SniperTrainer: resume == uninterrupted, NaN stop, metrics.json, checkpoints, AMP, eval hook."""

from __future__ import annotations

import json
import os

import pytest
import torch
from engine_fakes import (
    SLIM_MODEL_OPTS,
    SlimTrainer,
    TinyTrainer,
    make_cfg,
    unregister,
    write_coco_dataset,
)

from sniper.engine.defaults import seed_all_rng
from sniper.engine.solver import resolve_amp
from sniper.engine.trainer import check_losses


class _Killed(Exception):
    """Raised by a test trainer to simulate a run killed mid-training."""


class _KilledAfter3(SlimTrainer):
    """Dies at the start of iteration 3, after model_0000002.pth was saved."""

    def run_step(self, data_iter):
        if self.iter == 3:
            raise _Killed
        super().run_step(data_iter)


def _train(trainer_cls, cfg, resume=False):
    seed_all_rng(cfg.SEED)
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer


def _final_state(output_dir) -> dict[str, torch.Tensor]:
    return torch.load(os.path.join(output_dir, "model_final.pth"), weights_only=True)


def test_resume_matches_uninterrupted(tmp_path):
    """Real slim model on 64x64 chips: 6 iterations straight == 3, crash, resume to 6."""
    torch.set_num_threads(1)
    opts = [*SLIM_MODEL_OPTS, "SOLVER.STEPS", "(4,)", "SOLVER.WARMUP_ITERS", "2"]
    straight = _train(SlimTrainer, make_cfg(tmp_path / "a", *opts))
    cfg_b = make_cfg(tmp_path / "b", *opts)
    with pytest.raises(_Killed):
        _train(_KilledAfter3, cfg_b)
    assert (tmp_path / "b" / "last_checkpoint").read_text() == "model_0000002.pth"
    resumed = _train(SlimTrainer, cfg_b, resume=True)
    assert resumed.start_iter == 3
    a, b = _final_state(tmp_path / "a"), _final_state(tmp_path / "b")
    assert a["iteration"] == b["iteration"] == 5
    assert a["data_loader"] == b["data_loader"] == {"epoch": 1, "batch_in_epoch": 2}
    assert a["scheduler"] == b["scheduler"]
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float(), rtol=1e-5, atol=1e-7), key
    assert straight.optimizer.param_groups[0]["lr"] == resumed.optimizer.param_groups[0]["lr"]


def test_nan_loss_stops_with_message(tmp_path):
    class NanTrainer(TinyTrainer):
        NAN_AT = 2

    cfg = make_cfg(tmp_path)
    with pytest.raises(FloatingPointError, match=r"iteration 2: loss_box_reg=nan"):
        _train(NanTrainer, cfg)
    assert not (tmp_path / "last_checkpoint").exists()  # no checkpoint of NaN weights


def test_check_losses_names_every_bad_term():
    check_losses({"a": 1.0, "b": 0.0}, 3)
    with pytest.raises(FloatingPointError, match=r"iteration 7: a=inf, b=nan"):
        check_losses({"a": float("inf"), "b": float("nan"), "c": 1.0}, 7)


def test_metrics_checkpoints_and_events(tmp_path):
    trainer = _train(TinyTrainer, make_cfg(tmp_path, "SOLVER.CLIP_GRADIENTS.ENABLED", "True"))
    lines = [json.loads(x) for x in (tmp_path / "metrics.json").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 3, 5]
    keys = {
        "iteration",
        "lr",
        "total_loss",
        "loss_classifier",
        "loss_box_reg",
        "data_time",
        "time",
        "chips_per_s",
        "eta_seconds",
    }
    for line in lines:
        assert keys <= line.keys()
        assert line["chips_per_s"] > 0
    assert lines[-1]["eta_seconds"] == 0
    assert lines[0]["lr"] == pytest.approx(0.01 * (0.001 + 0.999 / 2))  # warm-up, iteration 1
    assert lines[-1]["lr"] == pytest.approx(0.001)  # after the step at 4
    names = set(os.listdir(tmp_path))
    assert {"model_0000002.pth", "model_final.pth", "last_checkpoint"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    assert not [n for n in names if n.endswith(".tmp")]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert trainer.iter == 5
    # resuming a finished run trains nothing and keeps the weights
    again = _train(TinyTrainer, make_cfg(tmp_path), resume=True)
    assert again.start_iter == 6


def test_amp_resolution():
    assert not resolve_amp(False, "float16", "cuda").enabled
    bf16 = resolve_amp(True, "bfloat16", "cpu")
    assert bf16.enabled and bf16.dtype is torch.bfloat16 and not bf16.use_scaler
    with pytest.warns(UserWarning, match="needs CUDA"):
        assert not resolve_amp(True, "float16", "cpu").enabled


def test_bf16_autocast_on_cpu(tmp_path):
    cfg = make_cfg(
        tmp_path,
        *SLIM_MODEL_OPTS,
        "SOLVER.MAX_ITER",
        2,
        "SOLVER.STEPS",
        "()",
        "SOLVER.AMP.ENABLED",
        "True",
        "SOLVER.AMP.DTYPE",
        "bfloat16",
    )
    trainer = _train(SlimTrainer, cfg)
    assert trainer.amp.enabled and trainer.amp.dtype is torch.bfloat16
    line = json.loads((tmp_path / "metrics.json").read_text().splitlines()[-1])
    assert torch.isfinite(torch.tensor(line["total_loss"]))


def test_fp16_on_cpu_is_disabled(tmp_path):
    cfg = make_cfg(tmp_path, "SOLVER.MAX_ITER", 2, "SOLVER.AMP.ENABLED", "True")
    with pytest.warns(UserWarning, match="float16 needs CUDA"):
        trainer = _train(TinyTrainer, cfg)
    assert not trainer.amp.enabled


def test_periodic_and_final_evaluation(tmp_path):
    name = f"engine_eval_{tmp_path.name}"
    write_coco_dataset(
        tmp_path / "data",
        name,
        [(40, 60), (50, 50)],
        {0: [([0, 0, 60, 40], 0)], 1: [([5, 5, 20, 20], 1)]},
    )

    class EvalTrainer(TinyTrainer):
        @classmethod
        def build_test_records(cls, cfg, dataset_name):
            from sniper.data.catalog import DatasetCatalog

            return DatasetCatalog.get(dataset_name)

    try:
        cfg = make_cfg(tmp_path / "out", "DATASETS.TEST", f"('{name}',)", "TEST.EVAL_PERIOD", 3)
        results = EvalTrainer(cfg).train()
    finally:
        unregister(name)
    # TinyDetector predicts the whole image as class 1 ("a"): image 0 right, image 1 wrong
    assert results[name]["bbox"]["AP-a"] == pytest.approx(100.0)
    assert results[name]["bbox"]["AP-b"] == pytest.approx(0.0)
    assert results[name]["speed"]["images"] == 2
    lines = [json.loads(x) for x in (tmp_path / "out" / "metrics.json").read_text().splitlines()]
    evals = [x for x in lines if f"{name}/bbox/AP" in x]
    assert [x["iteration"] for x in evals] == [2, 5]
    assert (tmp_path / "out" / "inference" / name / "coco_instances_results.json").is_file()
