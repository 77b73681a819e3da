"""launch(): single-process call, and 2 gloo worker processes on CPU (collectives, DDP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from sniper.engine.launch import all_gather, get_rank, get_world_size, launch, reduce_dict

HELPERS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "helpers")

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import torch
    from sniper.engine.launch import (all_gather, get_local_rank, get_rank, get_world_size,
                                      is_main_process, launch, reduce_dict, synchronize)

    def collectives(out_dir):
        rank = get_rank()
        gathered = all_gather({"rank": rank, "x": [rank] * 3})
        reduced = reduce_dict({"a": float(rank), "b": 2.0 * rank + 1})
        synchronize()
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"world": get_world_size(), "gathered": gathered, "reduced": reduced,
                       "main": is_main_process(), "local": get_local_rank(),
                       "backend": str(torch.distributed.get_backend())}, f)

    def train(out_dir, slim):
        from engine_fakes import SLIM_MODEL_OPTS, SlimTrainer, TinyTrainer, make_cfg
        from sniper.engine.defaults import default_setup
        torch.set_num_threads(1)
        opts = [*SLIM_MODEL_OPTS, "SOLVER.MAX_ITER", 2] if slim else []
        cfg = make_cfg(os.path.join(out_dir, "run"), *opts)
        default_setup(cfg, None)
        trainer = (SlimTrainer if slim else TinyTrainer)(cfg)
        trainer.train()
        state = trainer.unwrapped_model.state_dict()
        torch.save(state, os.path.join(out_dir, f"weights{get_rank()}.pth"))

    if __name__ == "__main__":
        mode, out_dir = sys.argv[1], sys.argv[2]
        if mode == "collectives":
            launch(collectives, 2, args=(out_dir,))
        else:
            launch(train, 2, args=(out_dir, mode == "slim"))
""")


def _run(tmp_path, mode: str) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([HELPERS, os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [sys.executable, str(script), mode, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_single_process_is_a_plain_call():
    assert launch(lambda a, b: a + b, 1, args=(2, 3)) == 5
    assert (get_rank(), get_world_size()) == (0, 1)
    assert all_gather({"x": 1}) == [{"x": 1}]
    assert reduce_dict({"a": 2.0}) == {"a": 2.0}


def test_launch_arguments_are_checked():
    with pytest.raises(ValueError, match="auto"):
        launch(print, 1, num_machines=2, machine_rank=0)
    with pytest.raises(ValueError, match="machine_rank"):
        launch(print, 1, num_machines=2, machine_rank=2, dist_url="tcp://127.0.0.1:1")


def test_two_gloo_processes_all_gather(tmp_path):
    _run(tmp_path, "collectives")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, res in enumerate(results):
        assert res["world"] == 2 and res["local"] == rank and res["main"] == (rank == 0)
        assert res["backend"] == "gloo"
        assert res["gathered"] == [{"rank": 0, "x": [0, 0, 0]}, {"rank": 1, "x": [1, 1, 1]}]
        assert res["reduced"] == {"a": 0.5, "b": 2.0}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["tiny", "slim"])
def test_ddp_training_on_two_cpu_processes(tmp_path, mode):
    _run(tmp_path, mode)
    w0 = torch.load(tmp_path / "weights0.pth", weights_only=True)
    w1 = torch.load(tmp_path / "weights1.pth", weights_only=True)
    for key, value in w0.items():
        if "running" in key or "num_batches" in key:
            continue  # BatchNorm statistics stay per process
        assert torch.allclose(value, w1[key]), key
    run = tmp_path / "run"
    assert (run / "model_final.pth").is_file() and (run / "config.yaml").is_file()
    assert (run / "log.txt").is_file() and (run / "log.txt.rank1").is_file()
    final = torch.load(run / "model_final.pth", weights_only=True)
    assert len(final["rng_states"]) == 2
    lines = (run / "metrics.json").read_text().splitlines()
    assert json.loads(lines[-1])["chips_per_s"] > 0
