"""Command line, default_setup (output dir, config.yaml, log, seeds) and bad-config errors."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import torch
from engine_fakes import make_cfg, restore_loggers

from sniper.config import add_sniper_config, get_cfg, load_config_or_exit
from sniper.engine.defaults import default_argument_parser, default_setup, seed_all_rng

TRAIN_NET = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    "projects",
    "sniper",
    "train_net.py",
)


@pytest.fixture(autouse=True)
def _restore_loggers():
    with restore_loggers():
        yield


def test_argument_parser():
    args = default_argument_parser().parse_args(
        [
            "--config-file",
            "a.yaml",
            "--num-gpus",
            "2",
            "--resume",
            "--dist-url",
            "tcp://127.0.0.1:1234",
            "SOLVER.BASE_LR",
            "0.1",
            "MODEL.WEIGHTS",
            "m.pth",
        ]
    )
    assert args.config_file == "a.yaml" and args.num_gpus == 2 and args.resume
    assert not args.eval_only and args.num_machines == 1 and args.machine_rank == 0
    assert args.dist_url == "tcp://127.0.0.1:1234"
    assert args.opts == ["SOLVER.BASE_LR", "0.1", "MODEL.WEIGHTS", "m.pth"]
    assert default_argument_parser().parse_args([]).dist_url == "auto"


def test_default_setup_writes_config_and_log(tmp_path):
    cfg = make_cfg(tmp_path / "out", "SOLVER.BASE_LR", 0.123, "SEED", 7)
    args = default_argument_parser().parse_args([])
    default_setup(cfg, args)
    saved = tmp_path / "out" / "config.yaml"
    assert saved.is_file() and (tmp_path / "out" / "log.txt").is_file()
    reloaded = add_sniper_config(get_cfg())
    reloaded.merge_from_file(str(saved))
    assert reloaded.SOLVER.BASE_LR == pytest.approx(0.123)
    assert reloaded.dump() == cfg.dump()
    a = (random.random(), torch.rand(2))
    seed_all_rng(7)
    b = (random.random(), torch.rand(2))
    assert a[0] == b[0] and torch.equal(a[1], b[1])
    assert not [n for n in os.listdir(tmp_path / "out") if n.endswith(".tmp")]


def test_random_seed_is_drawn_and_returned():
    assert seed_all_rng(-1) >= 0
    assert seed_all_rng(5) == 5


def test_unknown_key_exits_with_its_name(capsys):
    with pytest.raises(SystemExit) as exc:
        load_config_or_exit("", ["SOLVER.NOT_A_KEY", "1"])
    assert exc.value.code == 2
    assert "SOLVER.NOT_A_KEY" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load_config_or_exit("", ["SOLVER.BASE_LR", "-1"])
    assert "SOLVER.BASE_LR" in capsys.readouterr().err


def test_unknown_key_in_yaml_file(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("SOLVER:\n  BASE_LR: 0.1\n  NOPE: 3\n")
    with pytest.raises(SystemExit):
        load_config_or_exit(str(path), [])
    assert "SOLVER.NOPE" in capsys.readouterr().err


def test_train_net_bad_key_message():
    proc = subprocess.run(
        [sys.executable, TRAIN_NET, "--num-gpus", "2", "MODEL.NOT_A_KEY", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "MODEL.NOT_A_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr
