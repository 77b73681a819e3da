"""torchrun / srun environments (`sniper.engine.dist_env`) and a real `torchrun` job on CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from engine_fakes import SLIM_MODEL_OPTS

from sniper.engine.dist_env import DistEnv, first_slurm_host, from_environ

# Tiny chips and schedule (those of test_engine_train_net.py's two-process test).
CHIP_OPTS = [
    *("SNIPER.VALID_RANGES", "[[-1, -1]]", "SNIPER.NEG_MIN_PROPOSALS", "[1]"),
    *("SNIPER.CHIP_SIZE", "96", "SNIPER.CHIP_STRIDE", "32", "DATALOADER.NUM_WORKERS", "0"),
    *("SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "(3,)", "SOLVER.WARMUP_ITERS", "1"),
    *("SOLVER.CHECKPOINT_PERIOD", "2", "MODEL.RPN.PRE_NMS_TOPK_TEST", "100"),
    *("MODEL.RPN.POST_NMS_TOPK_TEST", "100"),
]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
TORCHRUN = {
    "RANK": "3",
    "WORLD_SIZE": "8",
    "LOCAL_RANK": "1",
    "LOCAL_WORLD_SIZE": "2",
    "MASTER_ADDR": "10.0.0.1",
    "MASTER_PORT": "29500",
}
SRUN = {
    "SLURM_PROCID": "5",
    "SLURM_STEP_NUM_TASKS": "16",
    "SLURM_NTASKS": "16",
    "SLURM_LOCALID": "5",
    "SLURM_STEP_NODELIST": "gpu[07-08]",
    "SLURM_STEP_TASKS_PER_NODE": "8(x2)",
    "SLURM_JOB_ID": "123456",
}


def test_no_launcher_is_none():
    assert from_environ({}) is None
    assert from_environ({"PATH": "/bin", "MASTER_ADDR": "x"}) is None
    # A batch script's own shell: SLURM_NTASKS but no srun step.
    assert from_environ({"SLURM_PROCID": "0", "SLURM_NTASKS": "16", "SLURM_JOB_ID": "1"}) is None


def test_torchrun_variables():
    assert from_environ(TORCHRUN) == DistEnv("torchrun", 3, 8, 1, 2, "env://")
    single = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    assert from_environ(single) == DistEnv("torchrun", 0, 1, 0, 0, "env://")
    # torchrun under srun: torchrun's variables win.
    assert from_environ({**SRUN, **TORCHRUN}).launcher == "torchrun"


def test_srun_variables():
    # port 15000 + 123456 % 20000 = 18456, host = first of the node list
    assert from_environ(SRUN) == DistEnv("slurm", 5, 16, 5, 8, "tcp://gpu07:18456")
    given = {**SRUN, "MASTER_ADDR": "head", "MASTER_PORT": "4000"}
    assert from_environ(given).init_method == "tcp://head:4000"
    no_local = {k: v for k, v in SRUN.items() if k not in ("SLURM_LOCALID",)}
    assert from_environ(no_local).local_rank == 0


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [
        ("gpu[03-05,09],cpu1", "gpu03"),
        ("n7,n8", "n7"),
        ("node-a", "node-a"),
        ("rack1-[001-004]", "rack1-001"),
        ("gpu[12]", "gpu12"),
    ],
)
def test_first_slurm_host(nodelist, host):
    assert first_slurm_host(nodelist) == host


@pytest.mark.parametrize("nodelist", ["", "gpu[]", "gpu[a-b]"])
def test_first_slurm_host_rejects_malformed_lists(nodelist):
    with pytest.raises(ValueError, match="SLURM node list"):
        first_slurm_host(nodelist)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RANK": "0", "WORLD_SIZE": "2"}, "LOCAL_RANK not set"),
        ({**TORCHRUN, "RANK": "x"}, "RANK='x' is not an integer"),
        ({**TORCHRUN, "RANK": "8"}, "RANK=8 must be < WORLD_SIZE=8"),
        ({**TORCHRUN, "WORLD_SIZE": "0"}, "WORLD_SIZE='0' must be >= 1"),
        ({k: v for k, v in TORCHRUN.items() if k != "MASTER_PORT"}, "MASTER_PORT is not"),
        ({**SRUN, "SLURM_PROCID": "16"}, "SLURM_PROCID=16 must be < SLURM_STEP_NUM_TASKS=16"),
        ({**SRUN, "SLURM_LOCALID": "-1"}, "SLURM_LOCALID='-1' must be >= 0"),
        (
            {k: v for k, v in SRUN.items() if k != "SLURM_JOB_ID"},
            "neither MASTER_PORT nor SLURM_JOB_ID",
        ),
        (
            {k: v for k, v in SRUN.items() if k != "SLURM_STEP_NODELIST"},
            "neither MASTER_ADDR nor a SLURM_\\*NODELIST",
        ),
    ],
)
def test_bad_environments_name_the_variable(environ, message):
    with pytest.raises(ValueError, match=message):
        from_environ(environ)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow  # about 2-4 min on 2 shared cores: two gloo processes train and evaluate
def test_torchrun_two_processes_train(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))
    }
    env.update(SNIPER_DATASETS=str(tmp_path / "datasets"), OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--nnodes",
        "1",
        "--node_rank",
        "0",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        os.path.join(ROOT, "projects", "sniper", "train_net.py"),
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
    # Spawned workers would each be "rank 0 of 1": the environment gave the ranks.
    assert "rank 0 of 2; environment" in (out / "log.txt").read_text()
    assert "rank 1 of 2; environment" in (out / "log.txt.rank1").read_text()
    assert (out / "model_final.pth").is_file()
    lines = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
    assert lines[-1]["synthetic_digits_mini/speed/images"] == 8
