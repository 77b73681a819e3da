"""SOLVER.ITER_SIZE (gradient accumulation) and the adaptive schedule
(SOLVER.REFERENCE_WORLD_SIZE), with the real chip loader and the real slim model.

Equivalence of batches needs the same samples and the same loss normalizers: every image
gets exactly BATCH_SIZE_PER_IMAGE anchors / proposals (plenty of both kinds), so a mean over
4 chips equals the mean of two means over 2; and the samplers pick the first candidates
instead of random ones (`first_samples`), so that no RNG stream order matters. The chip
loader gives the same chips to 1 x 4, 2 x 2 (ITER_SIZE) and 2 processes x 1 x 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

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
from torchvision.models.detection import _utils as det_utils

from sniper.cli_errors import ConfigError
from sniper.config import setup_cfg
from sniper.engine.batch_scaling import plan_batch_scaling, scale_schedule
from sniper.engine.defaults import seed_all_rng
from sniper.engine.preflight import check_launch
from sniper.engine.trainer import SniperTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GT = FOUR_IMAGE_GT
FIRST_SAMPLES = textwrap.dedent("""
    def first_samples(self, matched_idxs):
        # BalancedPositiveNegativeSampler without randomness: the first candidates.
        pos_masks, neg_masks = [], []
        for matched in matched_idxs:
            positive = torch.where(matched >= 1)[0]
            negative = torch.where(matched == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            pos = torch.zeros_like(matched, dtype=torch.uint8)
            neg = torch.zeros_like(matched, dtype=torch.uint8)
            pos[positive[:num_pos]] = 1
            neg[negative[:num_neg]] = 1
            pos_masks.append(pos)
            neg_masks.append(neg)
        return pos_masks, neg_masks
""")
_namespace: dict = {"torch": torch}
exec(FIRST_SAMPLES, _namespace)  # noqa: S102 - the same source runs in the worker script
first_samples = _namespace["first_samples"]


def _opts(name: str, out, *extra) -> list[str]:
    return [
        *SLIM_MODEL_OPTS,
        "MODEL.NUM_CLASSES",
        "2",
        "MODEL.BACKBONE.NORM",
        "FrozenBN",
        *ONE_SCALE_CHIP_OPTS,
        "SOLVER.WARMUP_ITERS",
        "1",
        "SOLVER.CHECKPOINT_PERIOD",
        "2",
        "SOLVER.CLIP_GRADIENTS.ENABLED",
        "True",
        "OUTPUT_DIR",
        str(out),
        "DATASETS.TRAIN",
        f"('{name}',)",
        "DATASETS.TEST",
        "()",
        *(str(e) for e in extra),
    ]


@pytest.fixture()
def dataset(tmp_path):
    name = f"iter_size_{tmp_path.name}"
    write_coco_dataset(tmp_path / "data", name, [(160, 200)] * 4, GT)
    with restore_loggers():
        yield name
    unregister(name)


@pytest.fixture()
def deterministic_sampling(monkeypatch):
    monkeypatch.setattr(det_utils.BalancedPositiveNegativeSampler, "__call__", first_samples)


def _train(cfg, trainer_cls=SniperTrainer, resume=False) -> SniperTrainer:
    seed_all_rng(cfg.SEED)
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer


def _weights(trainer: SniperTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.unwrapped_model.state_dict().items()}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    for key, value in a.items():
        assert torch.allclose(value.float(), b[key].float(), rtol=1e-4, atol=1e-6), key


def test_iter_size_2_of_2_chips_equals_4_chips(dataset, tmp_path, deterministic_sampling):
    torch.set_num_threads(1)
    common = ["SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "(2,)"]
    big = _train(setup_cfg("", _opts(dataset, tmp_path / "a", *common, "SOLVER.IMS_PER_BATCH", 4)))
    accumulated = _train(
        setup_cfg(
            "",
            _opts(
                dataset, tmp_path / "b", *common, "SOLVER.IMS_PER_BATCH", 2, "SOLVER.ITER_SIZE", 2
            ),
        )
    )
    small = _train(
        setup_cfg("", _opts(dataset, tmp_path / "c", *common, "SOLVER.IMS_PER_BATCH", 2))
    )
    a, b, c = _weights(big), _weights(accumulated), _weights(small)
    _assert_same(a, b)
    assert _max_diff(a, c) > 100 * max(_max_diff(a, b), 1e-7)  # the test can tell batches apart
    # the same chips were read: 3 batches of 4, 6 of 2
    assert big.data_loader.state_dict() == {"epoch": 0, "batch_in_epoch": 3}
    assert accumulated.data_loader.state_dict() == {"epoch": 0, "batch_in_epoch": 6}


class _Killed(Exception):
    """Raised to simulate a run killed in the middle of an accumulation."""


class _DyingLoader:
    """The real loader, raising `_Killed` at its `die_at`-th batch (0-based)."""

    def __init__(self, loader, die_at: int) -> None:
        self.loader, self.die_at, self.fetched = loader, die_at, 0

    def __iter__(self):
        self.it = iter(self.loader)
        return self

    def __next__(self):
        if self.fetched == self.die_at:
            raise _Killed
        self.fetched += 1
        return next(self.it)

    def state_dict(self):
        return self.loader.state_dict()

    def load_state_dict(self, state):
        self.loader.load_state_dict(state)


class _DiesMidAccumulation(SniperTrainer):
    @classmethod
    def build_train_loader(cls, cfg):
        # ITER_SIZE 2: iterations 0-1 take batches 0-3; iteration 2 dies at its 2nd batch,
        # after a forward and backward of its 1st (model_0000001.pth is the last checkpoint).
        return _DyingLoader(super().build_train_loader(cfg), die_at=5)


def test_resume_in_the_middle_of_an_accumulation(dataset, tmp_path):
    torch.set_num_threads(1)
    extra = ["SOLVER.IMS_PER_BATCH", 2, "SOLVER.ITER_SIZE", 2, "SOLVER.MAX_ITER", 4]
    extra += ["SOLVER.STEPS", "(3,)"]
    straight = _train(setup_cfg("", _opts(dataset, tmp_path / "a", *extra)))
    cfg_b = setup_cfg("", _opts(dataset, tmp_path / "b", *extra))
    with pytest.raises(_Killed):
        _train(cfg_b, _DiesMidAccumulation)
    assert (tmp_path / "b" / "last_checkpoint").read_text() == "model_0000001.pth"
    seed_all_rng(123)  # the checkpoint's RNG states must win over this
    resumed = SniperTrainer(cfg_b)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2
    resumed.train()
    a = torch.load(tmp_path / "a" / "model_final.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "model_final.pth", weights_only=True)
    assert a["iteration"] == b["iteration"] == 3
    assert a["data_loader"] == b["data_loader"]
    assert a["scheduler"] == b["scheduler"]
    _assert_same(a["model"], b["model"])
    assert _weights(straight).keys() == a["model"].keys()


def _cfg(*opts) -> object:
    return setup_cfg("", [str(o) for o in opts])


EIGHT_GPU = [
    "SOLVER.REFERENCE_WORLD_SIZE",
    8,
    "SOLVER.IMS_PER_BATCH",
    16,
    "SOLVER.BASE_LR",
    0.02,
    "SOLVER.MAX_ITER",
    90000,
    "SOLVER.STEPS",
    "(60000, 80000)",
    "SOLVER.WARMUP_ITERS",
    1000,
    "SOLVER.CHECKPOINT_PERIOD",
    5000,
    "TEST.EVAL_PERIOD",
    0,
]


def test_adaptive_schedule_on_one_gpu_scales_inversely():
    cfg, plan = scale_schedule(_cfg(*EIGHT_GPU), 1)
    s = cfg.SOLVER
    assert plan is not None and plan.factor == 1 / 8 and plan.effective_batch == 2
    assert s.IMS_PER_BATCH == 2 and s.BASE_LR == pytest.approx(0.0025)
    assert s.MAX_ITER == 720000 and tuple(s.STEPS) == (480000, 640000)
    assert s.WARMUP_ITERS == 8000 and s.CHECKPOINT_PERIOD == 40000 and cfg.TEST.EVAL_PERIOD == 0
    assert s.REFERENCE_WORLD_SIZE == 1 and s.REFERENCE_BATCH_SIZE == 2
    assert cfg.is_frozen()
    again, _ = scale_schedule(cfg, 1)
    assert again is cfg  # scaling the scaled config changes nothing
    assert "SOLVER.BASE_LR 0.02 -> 0.0025" in plan.describe()


def test_adaptive_schedule_iter_size_keeps_the_reference_schedule():
    cfg, plan = scale_schedule(_cfg(*EIGHT_GPU, "SOLVER.ITER_SIZE", 4), 2)
    assert plan.factor == 1.0 and plan.effective_batch == 16
    s = cfg.SOLVER
    assert (s.IMS_PER_BATCH, s.BASE_LR, s.MAX_ITER, tuple(s.STEPS)) == (
        4,
        0.02,
        90000,
        (60000, 80000),
    )
    assert set(plan.changes) == {
        "SOLVER.IMS_PER_BATCH",
        "SOLVER.REFERENCE_WORLD_SIZE",
        "SOLVER.REFERENCE_BATCH_SIZE",
    }


def test_adaptive_schedule_reference_batch_and_rounding():
    # Written for 4 chips per step; 3 processes x 1 chip x ITER_SIZE 1 = 3: factor 0.75.
    opts = ["SOLVER.REFERENCE_WORLD_SIZE", 2, "SOLVER.IMS_PER_BATCH", 2]
    opts += ["SOLVER.REFERENCE_BATCH_SIZE", 4, "SOLVER.BASE_LR", 0.04, "SOLVER.MAX_ITER", 10]
    opts += ["SOLVER.STEPS", "(5, 7)", "SOLVER.WARMUP_ITERS", 0, "TEST.EVAL_PERIOD", 4]
    cfg, plan = scale_schedule(_cfg(*opts), 3)
    s = cfg.SOLVER
    assert plan.factor == 0.75 and s.IMS_PER_BATCH == 3 and s.BASE_LR == pytest.approx(0.03)
    # 10 / 0.75 = 13.3, 5 / 0.75 = 6.7, 7 / 0.75 = 9.3, 4 / 0.75 = 5.3; 0 stays 0
    assert s.MAX_ITER == 13 and tuple(s.STEPS) == (7, 9) and cfg.TEST.EVAL_PERIOD == 5
    assert s.WARMUP_ITERS == 0


def test_adaptive_schedule_off_and_bad_values():
    cfg = _cfg("SOLVER.IMS_PER_BATCH", 6)
    assert plan_batch_scaling(cfg, 4) is None and scale_schedule(cfg, 4) == (cfg, None)
    with pytest.raises(ValueError, match=r"SOLVER\.IMS_PER_BATCH.*REFERENCE_WORLD_SIZE \(4\)"):
        _cfg("SOLVER.IMS_PER_BATCH", 6, "SOLVER.REFERENCE_WORLD_SIZE", 4)
    for key in ("SOLVER.ITER_SIZE", "SOLVER.REFERENCE_WORLD_SIZE", "SOLVER.REFERENCE_BATCH_SIZE"):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            _cfg(key, -1 if "REFERENCE" in key else 0)


def test_preflight_accepts_any_world_size_with_the_adaptive_schedule():
    with pytest.raises(ConfigError, match=r"IMS_PER_BATCH = 16: must be divisible"):
        check_launch(_cfg("SOLVER.IMS_PER_BATCH", 16), 3, 1, 0, "auto")
    cfg = _cfg("SOLVER.IMS_PER_BATCH", 16, "SOLVER.REFERENCE_WORLD_SIZE", 8)
    assert check_launch(cfg, 3, 1, 0, "auto") == 3


WORKER = f"""
import sys
import torch
from torchvision.models.detection import _utils as det_utils
{FIRST_SAMPLES}
det_utils.BalancedPositiveNegativeSampler.__call__ = first_samples
from sniper.engine import SniperTrainer
from sniper.engine.defaults import launch_train_net, run_train_net

def main(args):
    torch.set_num_threads(1)
    return run_train_net(args, SniperTrainer)

if __name__ == "__main__":
    launch_train_net(main)
"""


def test_adaptive_schedule_two_processes_equal_one(tmp_path, deterministic_sampling):
    """2 processes x 1 chip x ITER_SIZE 2 of a config written for 1 process and 2 chips per
    step: the rule doubles the LR and halves the schedule; the result equals one process
    trained by hand with 4 chips per step, the doubled LR and the halved schedule."""
    name = f"adaptive_{tmp_path.name}"
    data = tmp_path / "data"
    write_coco_dataset(data, name, [(160, 200)] * 4, GT)
    unregister(name)
    register = ["--register-coco", name, str(data / "instances.json"), str(data / "images")]
    written = ["SOLVER.REFERENCE_WORLD_SIZE", 1, "SOLVER.IMS_PER_BATCH", 1]
    written += ["SOLVER.REFERENCE_BATCH_SIZE", 2, "SOLVER.ITER_SIZE", 2, "SOLVER.BASE_LR", 0.01]
    written += ["SOLVER.MAX_ITER", 6, "SOLVER.STEPS", "(4,)", "SOLVER.WARMUP_ITERS", 2]
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [ROOT, os.path.join(ROOT, "projects", "sniper"), os.environ.get("PYTHONPATH", "")]
        ),
        OMP_NUM_THREADS="1",
    )
    out = tmp_path / "two"
    cmd = [sys.executable, str(script), "--num-gpus", "2", *register]
    cmd += [str(o) for o in _opts(name, out, *written)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = (out / "log.txt").read_text()
    assert "adaptive schedule: 2 processes x 1 chips x ITER_SIZE 2 = 4 chips per step" in log
    assert "SOLVER.BASE_LR 0.01 -> 0.02" in log and "SOLVER.MAX_ITER 6 -> 3" in log
    two = torch.load(out / "model_final.pth", weights_only=True)
    assert two["iteration"] == 2

    by_hand = ["SOLVER.IMS_PER_BATCH", 4, "SOLVER.BASE_LR", 0.02, "SOLVER.MAX_ITER", 3]
    by_hand += ["SOLVER.STEPS", "(2,)", "SOLVER.WARMUP_ITERS", 1, "SOLVER.CHECKPOINT_PERIOD", 1]
    with restore_loggers():
        write_coco_dataset(data, name, [(160, 200)] * 4, GT)
        try:
            torch.set_num_threads(1)
            one = _train(setup_cfg("", _opts(name, tmp_path / "one", *by_hand)))
        finally:
            unregister(name)
    _assert_same(_weights(one), two["model"])
