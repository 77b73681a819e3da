"""benchmarks/bench_retrofit.py end to end on a tiny COCO-json dataset: a random SNIPER
checkpoint, a random joint AutoFocus checkpoint, two retrofit iterations, one timed step."""

from __future__ import annotations

import json

import pytest
import torch
from bench_fakes import TINY_AUTOFOCUS, load_benchmark
from engine_fakes import restore_loggers, unregister, write_coco_dataset

from autofocus.config import setup_cfg
from autofocus.modeling import build_autofocus_model
from sniper.modeling import SniperRCNN

TRAIN = [
    "SNIPER.TRAIN_SCALES",
    "[1.0]",
    "SNIPER.VALID_RANGES",
    "[[-1, -1]]",
    "SNIPER.NEG_MIN_PROPOSALS",
    "[1]",
    "SNIPER.CHIP_SIZE",
    "96",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.STEPS",
    "(1,)",
    "SOLVER.WARMUP_ITERS",
    "0",
]


def _save(path, sniper: bool) -> dict[str, torch.Tensor]:
    """A random SniperRCNN (`sniper`) or AutoFocusRCNN checkpoint of the tiny settings."""
    torch.manual_seed(3)
    cfg = setup_cfg("", [*TINY_AUTOFOCUS, *TRAIN])
    if sniper:
        state = SniperRCNN.from_config(cfg).state_dict()
    else:
        state = build_autofocus_model(cfg).state_dict()
    torch.save({"model": state}, path)
    return state


def test_retrofit_vs_joint_writes_timing_curves_json_and_plot(tmp_path, capsys) -> None:
    name = f"af_bench_retro_{tmp_path.name}"
    write_coco_dataset(
        tmp_path / "data",
        name,
        [(120, 160)] * 3,
        {i: [([20, 30, 40, 30], 0), ([90, 50, 12, 14], 1)] for i in range(3)},
    )
    sniper = _save(tmp_path / "sniper.pth", sniper=True)
    _save(tmp_path / "joint.pth", sniper=False)
    out = tmp_path / "out"
    argv = [
        "--config-file",
        "",
        "--sniper-weights",
        str(tmp_path / "sniper.pth"),
        "--joint-weights",
        str(tmp_path / "joint.pth"),
        "--iters",
        "2",
        "--timing-iters",
        "1",
        "--dataset",
        name,
        "--num-images",
        "2",
        "--thresholds",
        "0",
        "1",
        "--output",
        str(out),
        *TINY_AUTOFOCUS,
        *TRAIN,
        "DATASETS.TRAIN",
        f"('{name}',)",
    ]
    try:
        with restore_loggers():
            result = load_benchmark("bench_retrofit").main(argv)
    finally:
        unregister(name)
    assert result["retrofit_training"]["iterations"] == 2
    assert result["retrofit_training"]["seconds"] > 0
    timing = result["step_timing"]
    assert set(timing) == {"retrofit", "joint"}
    assert all(len(t["seconds"]) == 1 and t["median"] > 0 for t in timing.values())
    methods = [r["method"] for r in result["rows"]]
    assert methods == [
        "retrofit full multi-scale",
        "retrofit t=0",
        "retrofit t=1",
        "joint full multi-scale",
        "joint t=0",
        "joint t=1",
    ]
    coarse, fine = 60 * 80, 120 * 160  # long side 80 -> factor 0.5
    by_method = {r["method"]: r for r in result["rows"]}
    assert by_method["retrofit t=0"]["pixels_per_scale"] == [coarse, fine]
    assert by_method["joint t=1"]["pixels_per_scale"] == [coarse, 0]
    # the retrofit's detector is the SNIPER file's: its full multi-scale AP is that model's
    final = torch.load(result["retrofit_weights"], map_location="cpu", weights_only=True)
    assert all(torch.equal(final["model"][k], v) for k, v in sniper.items())
    saved = json.loads((out / "bench_retrofit.json").read_text())
    assert len(saved["rows"]) == 6 and saved["joint_run"] is None
    assert (out / "bench_retrofit.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "of a joint step" in printed and "speed-up" in printed


def test_a_missing_weights_file_is_one_error_line(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_benchmark("bench_retrofit").main(
            ["--sniper-weights", str(tmp_path / "no.pth"), "--joint-weights", "x"]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --sniper-weights {str(tmp_path / 'no.pth')!r}: not a file"]
