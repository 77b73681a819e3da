"""train_net.py with the real chip loader and the real (slim) model.

Fast: train + final evaluation + --eval-only through `train_net.main` on a tiny COCO-json
dataset, and resume == uninterrupted with the real loader. Slow: the command line with
`--num-gpus 2` (two gloo processes) on the built-in synthetic dataset.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from engine_fakes import (
    FOUR_IMAGE_GT,
    ONE_SCALE_CHIP_OPTS,
    SLIM_MODEL_OPTS,
    restore_loggers,
    unregister,
    write_coco_dataset,
)

from sniper.engine.defaults import default_argument_parser, seed_all_rng
from sniper.engine.trainer import SniperTrainer

TRAIN_NET = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    "projects",
    "sniper",
    "train_net.py",
)
CHIP_OPTS = [
    *ONE_SCALE_CHIP_OPTS,
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "4",
    "SOLVER.STEPS",
    "(3,)",
    "SOLVER.WARMUP_ITERS",
    "1",
    "SOLVER.CHECKPOINT_PERIOD",
    "2",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST",  # >= TEST.MAX_DETS_PER_IMAGE
    "100",
]
GT = FOUR_IMAGE_GT


@pytest.fixture()
def dataset(tmp_path):
    name = f"engine_tn_{tmp_path.name}"
    write_coco_dataset(tmp_path / "data", name, [(160, 200)] * 4, GT)
    with restore_loggers():
        yield name
    unregister(name)


def _train_net():
    spec = importlib.util.spec_from_file_location("sniper_train_net", TRAIN_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _opts(name: str, out) -> list[str]:
    return [
        *SLIM_MODEL_OPTS,
        "MODEL.NUM_CLASSES",
        "2",
        *CHIP_OPTS,
        "OUTPUT_DIR",
        str(out),
        "DATASETS.TRAIN",
        f"('{name}',)",
        "DATASETS.TEST",
        f"('{name}',)",
    ]


@pytest.mark.slow  # about 90 s: trains, evaluates, then evaluates again from the weights
def test_train_then_eval_only(dataset, tmp_path):
    train_net = _train_net()
    out = tmp_path / "run"
    args = default_argument_parser().parse_args(_opts(dataset, out))
    results = train_net.main(args)
    assert set(results[dataset]["bbox"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-a"}
    for name in ("model_0000001.pth", "model_final.pth", "config.yaml", "metrics.json"):
        assert (out / name).is_file(), name
    lines = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
    assert lines[0]["iteration"] == 3 and lines[0]["chips_per_s"] > 0
    assert f"{dataset}/bbox/AP" in lines[-1]

    eval_args = default_argument_parser().parse_args(
        [
            "--eval-only",
            *_opts(dataset, tmp_path / "eval"),
            "MODEL.WEIGHTS",
            str(out / "model_final.pth"),
        ]
    )
    again = train_net.main(eval_args)
    assert again[dataset]["bbox"] == pytest.approx(results[dataset]["bbox"], nan_ok=True)
    record = json.loads((tmp_path / "eval" / "metrics.json").read_text().splitlines()[-1])
    assert record["eval_only"] == str(out / "model_final.pth")
    assert record[f"{dataset}/bbox/AP"] == pytest.approx(again[dataset]["bbox"]["AP"], nan_ok=True)
    assert record[f"{dataset}/speed/pixels_per_image"] > 0


class _Killed(Exception):
    """Raised by a test trainer to simulate a run killed mid-training."""


class _KilledAfter2(SniperTrainer):
    def run_step(self, data_iter):
        if self.iter == 2:
            raise _Killed
        super().run_step(data_iter)


def test_resume_with_real_loader(dataset, tmp_path):
    from sniper.config import setup_cfg

    torch.set_num_threads(1)
    opts = [*_opts(dataset, tmp_path / "a"), "DATASETS.TEST", "()"]
    cfg_a = setup_cfg("", opts)
    cfg_b = setup_cfg("", [*opts, "OUTPUT_DIR", str(tmp_path / "b")])
    seed_all_rng(0)
    SniperTrainer(cfg_a).train()
    seed_all_rng(0)
    with pytest.raises(_Killed):
        _KilledAfter2(cfg_b).train()
    seed_all_rng(123)  # the checkpoint's RNG states must win over this
    trainer = SniperTrainer(cfg_b)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 2
    trainer.train()
    a = torch.load(tmp_path / "a" / "model_final.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "model_final.pth", weights_only=True)
    assert a["data_loader"] == b["data_loader"]
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float(), rtol=1e-5, atol=1e-7), key


@pytest.mark.slow
def test_command_line_two_processes(tmp_path):
    env = dict(os.environ, SNIPER_DATASETS=str(tmp_path / "datasets"), OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        TRAIN_NET,
        "--num-gpus",
        "2",
        *SLIM_MODEL_OPTS,
        "MODEL.NUM_CLASSES",
        "10",
        *CHIP_OPTS,
        "SNIPER.TRAIN_SCALES",
        "[[256, 256]]",
        "SOLVER.IMS_PER_BATCH",
        "4",
        "OUTPUT_DIR",
        str(out),
        "DATASETS.TRAIN",
        "('synthetic_digits_mini',)",
        "DATASETS.TEST",
        "('synthetic_digits_mini',)",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (out / "model_final.pth").is_file() and (out / "log.txt.rank1").is_file()
    dets = out / "inference" / "synthetic_digits_mini" / "coco_instances_results.json"
    assert dets.is_file()
    lines = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
    assert "synthetic_digits_mini/bbox/AP" in lines[-1]
    assert lines[-1]["synthetic_digits_mini/speed/images"] == 8
