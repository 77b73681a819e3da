"""benchmarks/bench_autofocus.py end to end on a tiny COCO-json dataset and a random model."""

from __future__ import annotations

import json

import pytest
import torch
from bench_fakes import TINY_AUTOFOCUS, load_benchmark, write_tiny_dataset
from engine_fakes import unregister


def _bench():
    return load_benchmark("bench_autofocus")


def test_sweep_writes_table_json_and_plot(tmp_path, capsys) -> None:
    name = f"af_bench_{tmp_path.name}"
    write_tiny_dataset(tmp_path / "data", name, 3)
    try:
        torch.manual_seed(0)
        rows = _bench().main(
            [
                "--config-file",
                "",
                *TINY_AUTOFOCUS,
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
    # FocusChips: the 12 x 14 box of each image needs the finer scale (size < 30), the
    # 40 x 30 one does not; t = 0 chips the whole image, t = 1 nothing.
    assert "focus" not in rows[0]
    assert rows[2]["focus"]["responsible_boxes_t0"] == 2
    assert rows[2]["focus"]["missing_rate_t0"] == 0.0
    assert rows[2]["focus"]["empty_rate_t0"] == pytest.approx(1 - 12 * 14 / (120 * 160))
    assert rows[3]["focus"]["missing_rate_t0"] == 1.0
    assert rows[3]["focus"]["empty_rate_t0"] == 0.0
    saved = json.loads((tmp_path / "out" / "bench_autofocus.json").read_text())
    assert saved["images"] == 2 and len(saved["rows"]) == 4
    assert (tmp_path / "out" / "bench_autofocus.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "speed-up" in printed and "missing t0" in printed
