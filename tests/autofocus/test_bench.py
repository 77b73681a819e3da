"""benchmarks/bench_autofocus.py end to end on a tiny COCO-json dataset and a random model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from engine_fakes import unregister, write_coco_dataset

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_autofocus.py"
TINY = [
    "MODEL.META_ARCHITECTURE",
    "AutoFocusRCNN",
    "MODEL.BACKBONE.NAME",
    "mobilenet_v2_fpn",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "MODEL.NUM_CLASSES",
    "2",
    "MODEL.RPN.POST_NMS_TOPK_TEST",  # >= TEST.MAX_DETS_PER_IMAGE
    "100",
    "AUTOFOCUS.HEAD_CHANNELS",
    "8",
    "AUTOFOCUS.SCALES",
    "[[80, 80], 1.0]",
    "AUTOFOCUS.VALID_RANGES",
    "[[30, -1], [-1, 30]]",
    "AUTOFOCUS.THRESHOLDS",
    "[0.0]",
    "AUTOFOCUS.DILATIONS",
    "[1]",
    "AUTOFOCUS.MIN_SIZES",
    "[2]",
]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_autofocus", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_writes_table_json_and_plot(tmp_path, capsys) -> None:
    name = f"af_bench_{tmp_path.name}"
    write_coco_dataset(
        tmp_path / "data",
        name,
        [(120, 160)] * 3,
        {i: [([20, 30, 40, 30], 0), ([90, 50, 12, 14], 1)] for i in range(3)},
    )
    try:
        torch.manual_seed(0)
        rows = _bench().main(
            [
                "--config-file",
                "",
                *TINY,
                "--dataset",
                name,
                "--num-images",
                "2",
                "--thresholds",
                "0",
                "1",
                "--output",
                str(tmp_path / "out"),
            ]
        )
    finally:
        unregister(name)
    coarse, fine = 60 * 80, 120 * 160  # long side 80 -> factor 0.5
    assert [r["method"] for r in rows] == [
        "full multi-scale",
        "AutoFocus t=[0.0]",
        "AutoFocus t=0",
        "AutoFocus t=1",
    ]
    assert rows[0]["pixel_fraction"] == pytest.approx(1.0)
    assert rows[2]["pixels_per_scale"] == [coarse, fine]  # t = 0: everything is a FocusPixel
    assert rows[3]["pixels_per_scale"] == [coarse, 0]  # t = 1: early stop everywhere
    assert rows[3]["pixel_fraction"] == pytest.approx(coarse / (coarse + fine))
    assert rows[3]["finest_fraction"] == 0.0
    assert all(r["images_per_s"] > 0 for r in rows)
    saved = json.loads((tmp_path / "out" / "bench_autofocus.json").read_text())
    assert saved["images"] == 2 and len(saved["rows"]) == 4
    assert (tmp_path / "out" / "bench_autofocus.png").stat().st_size > 1000
    assert "speed-up" in capsys.readouterr().out
