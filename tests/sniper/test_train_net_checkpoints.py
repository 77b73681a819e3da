"""train_net.py as a user runs it, on checkpoint trouble: exit status, one `error:` line, no
traceback. Resume over corrupt files, a model that changed, weights that fit nothing,
`--eval-only --resume` with nothing to load, and a previous run in OUTPUT_DIR.

The subprocesses take 10-40 s each on a loaded 2-core machine: they are `slow`; the fast
suite has the in-process twin of the refusal (`launch_train_net` with argv) and the unit
tests of `test_engine_checkpoint_files.py`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from engine_fakes import SLIM_MODEL_OPTS, restore_loggers, unregister, write_coco_dataset
from torch import nn

from sniper.config import setup_cfg
from sniper.engine.trainer import SniperTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(ROOT, "projects", "sniper", "train_net.py")
NAME = "ckpt_cli"
# Tiny chips, 4 iterations; a checkpoint of iteration 3 resumes at 4 = MAX_ITER (no step).
OPTS = [
    *SLIM_MODEL_OPTS,
    "MODEL.NUM_CLASSES",
    "2",
    "SNIPER.TRAIN_SCALES",
    "[1.0]",
    "SNIPER.VALID_RANGES",
    "[[-1, -1]]",
    "SNIPER.CHIP_SIZE",
    "96",
    "SNIPER.CHIP_STRIDE",
    "32",
    "SNIPER.NEG_MIN_PROPOSALS",
    "[1]",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "100",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "4",
    "SOLVER.STEPS",
    "(3,)",
    "SOLVER.WARMUP_ITERS",
    "1",
    "DATASETS.TRAIN",
    f"('{NAME}',)",
    "DATASETS.TEST",
    "()",
]
GT = {i: [([10 + 7 * i, 12, 30, 24], 0), ([90, 60, 50, 60], 1)] for i in range(2)}


@pytest.fixture()
def data(tmp_path):
    root = tmp_path / "data"
    write_coco_dataset(root, NAME, [(160, 200)] * 2, GT)
    with restore_loggers():
        yield ["--register-coco", NAME, str(root / "instances.json"), str(root / "images")]
    unregister(NAME)


def _run(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, TRAIN_NET, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def _save_checkpoint(out, name: str, *opts: str) -> None:
    """A real checkpoint of iteration 3 of the OPTS model, saved without training."""
    cfg = setup_cfg("", [*OPTS, *opts, "OUTPUT_DIR", str(out)])
    trainer = SniperTrainer(cfg)
    trainer.iter = 3
    trainer.save_checkpoint(name)


@pytest.mark.slow
def test_resume_falls_back_over_corrupt_checkpoints(data, tmp_path):
    out = tmp_path / "run"
    _save_checkpoint(out, "model_0000003")
    good = torch.load(out / "model_0000003.pth", weights_only=True)
    (out / "model_0000005.pth").write_bytes(os.urandom(2048))  # random bytes
    (out / "model_0000004.pth").write_bytes((out / "model_0000003.pth").read_bytes()[:-64])
    (out / "model_final.pth").write_bytes(b"")  # empty
    (out / "last_checkpoint").write_text("model_final.pth")
    stale = out / ".model_0000006.pth.x1y2.tmp"
    stale.write_bytes(b"partial")
    proc = _run([*data, "--resume", *OPTS, "OUTPUT_DIR", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("model_final.pth", "model_0000005.pth", "model_0000004.pth"):
        assert f"cannot resume from {out / name}: checkpoint" in proc.stdout, name
    assert f"resuming at iteration 4 from {out / 'model_0000003.pth'}" in proc.stdout
    assert not stale.exists()
    assert torch.load(out / "model_0000003.pth", weights_only=True)["iteration"] == 3
    assert good["iteration"] == 3


@pytest.mark.slow
def test_resume_nothing_readable_and_missing_named_file(data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model_final.pth").write_bytes(b"\x00" * 100)
    (out / "last_checkpoint").write_text("model_0000009.pth")
    line = _one_error_line(_run([*data, "--resume", *OPTS, "OUTPUT_DIR", str(out)]))
    assert line.startswith(f"error: no readable checkpoint in {out} to resume from (")
    assert "last_checkpoint names model_0000009.pth, which does not exist" in line


@pytest.mark.slow
def test_resume_after_num_classes_change_is_refused(data, tmp_path):
    # the run was trained with 4 classes; the dataset (and now the config) has 2
    out = tmp_path / "run"
    _save_checkpoint(out, "model_final", "MODEL.NUM_CLASSES", "4")
    proc = _run([*data, "--resume", *OPTS, "OUTPUT_DIR", str(out)])
    line = _one_error_line(proc)
    assert line.startswith(f"error: checkpoint {out / 'model_final.pth'} does not fit this model")
    assert "roi_heads.box_predictor.bbox_pred.bias has shape (20,), model (12,)" in line
    assert f"run without --resume and with MODEL.WEIGHTS {out / 'model_final.pth'}" in line


@pytest.mark.slow
def test_previous_run_refused_without_resume(data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model_final.pth").write_bytes(b"old")
    (out / "last_checkpoint").write_text("model_final.pth")
    line = _one_error_line(_run([*data, *OPTS, "OUTPUT_DIR", str(out)]))
    assert line == (
        f"error: output folder {out} holds a finished run (last_checkpoint, model_final.pth): "
        "add --resume to continue it, --overwrite to delete its checkpoints and train "
        "again, or set OUTPUT_DIR to a new folder"
    )
    assert (out / "model_final.pth").read_bytes() == b"old"
    assert sorted(os.listdir(out)) == ["last_checkpoint", "model_final.pth"]  # no log, no config


@pytest.mark.slow
def test_eval_only_refuses_weights_that_fit_nothing(data, tmp_path):
    weights = tmp_path / "classifier.pth"
    torch.save(nn.ModuleDict({"features": nn.Conv2d(3, 8, 3)}).state_dict(), weights)
    out = str(tmp_path / "eval")
    line = _one_error_line(
        _run([*data, "--eval-only", *OPTS, "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", out])
    )
    assert line.startswith(f"error: MODEL.WEIGHTS file {str(weights)!r} has no tensor that fits")
    line = _one_error_line(_run([*data, "--eval-only", "--resume", *OPTS, "OUTPUT_DIR", out]))
    assert line.startswith(f"error: --eval-only: no checkpoint in {out} and MODEL.WEIGHTS is empty")


def test_launch_refuses_previous_run_in_process(data, tmp_path, capsys):
    from sniper.engine.defaults import launch_train_net

    # `data` registered the dataset in this process: no --register-coco here.
    out = tmp_path / "run"
    out.mkdir()
    (out / "model_0000001.pth").write_bytes(b"old")
    called = []
    with pytest.raises(SystemExit) as info:
        launch_train_net(called.append, argv=[*OPTS, "OUTPUT_DIR", str(out)])
    assert info.value.code == 2 and called == []
    assert capsys.readouterr().err == (
        f"error: output folder {out} holds an unfinished run (model_0000001.pth): add "
        "--resume to continue it, --overwrite to delete its checkpoints and train again, or "
        "set OUTPUT_DIR to a new folder\n"
    )
    launch_train_net(called.append, argv=["--overwrite", *OPTS, "OUTPUT_DIR", str(out)])
    assert len(called) == 1 and called[0].overwrite
    assert (out / "model_0000001.pth").read_bytes() == b"old"  # the trainer deletes, not launch
