"""Threshold calibration (autofocus.calibration) with a fake model of graded FocusPixel
probabilities, and `python -m autofocus.calibrate` end to end with a tiny random model.

Images are 1024 x 1024; the coarse scale is long side 512 (factor 0.5, INTER_AREA keeps the
value of blocks painted on even image px), then 1.0 (and 2.0). A cell's FocusPixel
probability is the largest red value in it over 255, so each red block below is a FocusPixel
region of a known probability: the chips of a threshold t are those of the blocks of
probability >= t.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from bench_fakes import TINY_AUTOFOCUS, write_tiny_dataset
from engine_fakes import unregister
from torch import Tensor, nn

from autofocus.calibrate import calibrated_config_text, format_table
from autofocus.calibrate import main as calibrate_main
from autofocus.calibration import (
    Calibration,
    NoReadableImages,
    ThresholdRow,
    TransitionCalibration,
    calibrate_thresholds,
    check_target,
    choose_threshold,
)
from autofocus.cascade import AutoFocusCascade
from autofocus.config import setup_cfg
from autofocus.focus_stats import TransitionCounts
from autofocus.params import CascadeParams

STRIDE = 16
ROOT = Path(__file__).resolve().parents[2]
GRID = (0.2, 0.35, 0.45, 0.55, 0.65, 0.85)
# (block, red value, GT box) in image px; blocks on multiples of 32 so that a block is
# whole cells at 0.5x (32 image px) and at 1.0x (16 image px)
A = ((128, 128, 192, 192), 200, (136, 136, 176, 176))  # p 0.784, box size 40
D = ((384, 384, 448, 448), 150, (400, 400, 416, 416))  # p 0.588, box size 16
E = ((768, 768, 832, 832), 100, (800, 800, 816, 816))  # p 0.392, box size 16
BIG = (500, 40, 620, 160)  # size 120: kept at the coarse scale, needs no FocusChip


class GradedFocusModel(nn.Module):
    """FocusPixel probability of a cell = max red / 255 in it; no detections."""

    focus_stride = STRIDE

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        out = []
        for im in images:
            red = im[0].float()[None, None] / 255.0
            prob = F.max_pool2d(red, STRIDE, STRIDE, ceil_mode=True)[0, 0]
            out.append(
                {
                    "boxes": torch.zeros(0, 4),
                    "scores": torch.zeros(0),
                    "labels": torch.zeros(0, dtype=torch.int64),
                    "focus_prob": prob,
                }
            )
        return out


def _image(blocks) -> np.ndarray:
    image = np.zeros((1024, 1024, 3), np.uint8)
    for (x1, y1, x2, y2), value, _ in blocks:
        image[y1:y2, x1:x2, 0] = value
    return image


def _records(blocks, extra=()) -> list[dict]:
    boxes = [b for _, _, b in blocks] + list(extra)
    return [{"boxes": np.array(boxes, np.float32).reshape(-1, 4), "height": 1024, "width": 1024}]


def _params(three: bool) -> CascadeParams:
    if three:
        return CascadeParams(
            ([512, 512], 1.0, 2.0), ([75, -1], [32, 75], [-1, 32]), (0.0, 0.0), (1, 1), (4, 4)
        )
    return CascadeParams(([512, 512], 1.0), ([75, -1], [-1, 75]), (0.0,), (1,), (4,))


def _calibrate(blocks, params, **kw):
    cascade = AutoFocusCascade(GradedFocusModel().eval(), params)
    image = _image(blocks)
    return cascade, calibrate_thresholds(
        cascade, _records(blocks, [BIG]), lambda r: image, thresholds=GRID, **kw
    )


def test_one_transition_picks_the_highest_threshold_that_keeps_the_boxes() -> None:
    _, cal = _calibrate([A, D], _params(False))
    (tr,) = cal.transitions
    # A (p 0.784) and D (p 0.588) are both covered up to t = 0.55, only A up to 0.65
    assert [r.coverage for r in tr.rows] == [1.0, 1.0, 1.0, 1.0, 0.5, 0.0]
    assert tr.chosen.threshold == 0.55 and tr.met_target and cal.thresholds == (0.55,)
    # each block (2 x 2 cells at 0.5x) grows to 4 x 4 cells = 128 x 128 image px
    chip = 128 * 128
    assert tr.chosen.finer_pixels == 2 * chip and tr.chosen.scale_fraction == 2 * chip / 1024**2
    assert tr.chosen.counts.empty_rate == pytest.approx(1 - (40 * 40 + 16 * 16) / (2 * chip))
    assert tr.rows[4].counts.empty_rate == pytest.approx(1 - 40 * 40 / chip)
    assert cal.pixel_fraction == pytest.approx((512**2 + 2 * chip) / (512**2 + 1024**2))
    _, half = _calibrate([A, D], _params(False), target=0.5)
    assert half.thresholds == (0.65,)
    lines = format_table(cal)
    assert any(line.split()[:2] == ["0.550", "1.0000"] and line.endswith("*") for line in lines)
    # t = 0.2 ... 0.55 give the same chips: 0.35 and 0.45 are folded into that run
    shown = [line.split()[0] for line in lines if line.startswith("      0.")]
    assert shown == ["0.200", "0.550", "0.650", "0.850"]


def test_transitions_are_calibrated_in_turn() -> None:
    cascade, cal = _calibrate([A, D, E], _params(True), target=0.6)
    t0, t1 = cal.transitions
    # transition 0: A, D and E need scale 1 or 2; E drops out above 0.392, D above 0.588
    assert [r.coverage for r in t0.rows] == pytest.approx([1, 1, 2 / 3, 2 / 3, 1 / 3, 0])
    assert t0.chosen.threshold == 0.55
    # transition 1 runs with t0 = 0.55: E (p 0.392) never reached scale 1, so D is the only
    # box that needs scale 2 there (with E, t = 0.55 would cover 1 of 2 < 0.6: t1 = 0.35)
    assert t1.chosen.counts.responsible == 1 and t1.chosen.threshold == 0.55
    assert cal.thresholds == (0.55, 0.55)
    # the implied pixel fraction is what the calibrated cascade processes
    out = cascade([_image([A, D, E])], thresholds=cal.thresholds)[0]
    assert cal.pixel_fraction == pytest.approx(out["pixel_fraction"])


def test_unreachable_target_keeps_the_best_covering_threshold(caplog) -> None:
    _, cal = _calibrate([A, D], _params(False), tolerance=-100.0)  # no box is ever inside
    (tr,) = cal.transitions
    assert not tr.met_target and tr.chosen.coverage == 0.0 and tr.chosen.threshold == 0.85
    assert "no threshold reaches coverage" in caplog.text


def test_choose_threshold_and_checks() -> None:
    with pytest.raises(ValueError, match="target must lie in"):
        check_target(0.0)
    with pytest.raises(ValueError, match="target must lie in"):
        check_target(1.5)
    assert check_target(1) == 1.0
    with pytest.raises(ValueError, match="no candidate rows"):
        choose_threshold([], 0.9)
    cascade = AutoFocusCascade(GradedFocusModel().eval(), _params(False))
    with pytest.raises(NoReadableImages, match="none of the 1 records"):
        calibrate_thresholds(cascade, _records([A]), lambda r: None)
    with pytest.raises(ValueError, match="thresholds must lie in"):
        calibrate_thresholds(cascade, _records([A]), lambda r: None, thresholds=[1.2])


def test_config_text_names_its_base_relative_to_the_output(tmp_path) -> None:
    (tmp_path / "base.yaml").write_text("AUTOFOCUS:\n  SCALES: [[512, 512], 1.0, 2.0]\n")
    out = tmp_path / "cal" / "c.yaml"
    out.parent.mkdir()
    rows = [
        ThresholdRow(t, TransitionCounts(10, m, 100.0, 50.0), 10, 100)
        for t, m in ((0.3, 0), (0.07, 1))
    ]
    cal = Calibration(
        0.9, tuple(TransitionCalibration(s, (r,), r, s == 0) for s, r in enumerate(rows)), 2, 5, 10
    )
    overrides = {"AUTOFOCUS.MIN_SIZES": (4, 6), "MODEL.FPN.OUT_CHANNELS": 16}
    text = calibrated_config_text(str(tmp_path / "base.yaml"), str(out), cal, overrides)
    assert "# transition 1: t = 0.07, coverage 0.9000" in text and "(target not reached)" in text
    assert yaml.safe_load(text) == {
        "_BASE_": "../base.yaml",
        "AUTOFOCUS": {"MIN_SIZES": [4, 6], "THRESHOLDS": [0.3, 0.07]},
        "MODEL": {"FPN": {"OUT_CHANNELS": 16}},
    }
    out.write_text(text)
    cfg = setup_cfg(str(out), [])
    assert list(cfg.AUTOFOCUS.THRESHOLDS) == [0.3, 0.07] and cfg.MODEL.FPN.OUT_CHANNELS == 16
    assert cal.pixel_fraction == (5 + 10 + 10) / 10
    assert "_BASE_" not in calibrated_config_text("", str(out), cal, {})


def _run_cli(tmp_path, *flags, config="configs/autofocus/synthetic_mobilenet.yaml"):
    name = f"af_cal_{tmp_path.name}"
    write_tiny_dataset(tmp_path / "data", name, 2)
    try:
        torch.manual_seed(0)
        return calibrate_main(["--config-file", config, *TINY_AUTOFOCUS, "--dataset", name, *flags])
    finally:
        unregister(name)


def test_cli_writes_a_loadable_calibrated_config(tmp_path, capsys) -> None:
    out = tmp_path / "cal" / "calibrated.yaml"
    out.parent.mkdir()
    config = str(ROOT / "configs/autofocus/synthetic_mobilenet.yaml")
    flags = ["--thresholds", "0", "1", "--output", str(out), "MODEL.WEIGHTS", ""]
    assert _run_cli(tmp_path, *flags, config=config) == 0
    printed = capsys.readouterr().out
    assert "transition 0 -> 1 (2 boxes need a finer scale)" in printed
    assert "wrote" in printed and "[0.0]" in printed
    text = out.read_text()
    base = yaml.safe_load(text)["_BASE_"]
    assert os.path.realpath(os.path.join(out.parent, base)) == os.path.realpath(config)
    assert "WEIGHTS" not in text
    cfg = setup_cfg(str(out), [])
    # t = 0 chips every image whole (coverage 1), t = 1 none: the target keeps t = 0
    assert list(cfg.AUTOFOCUS.THRESHOLDS) == [0.0]
    assert cfg.MODEL.FPN.OUT_CHANNELS == 16  # the command line's overrides are kept
    assert cfg.OUTPUT_DIR == "output/autofocus_synthetic_mobilenet"  # from the base
    assert not [p for p in os.listdir(out.parent) if p.endswith(".tmp")]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--target", "0"], "error: --target must lie in (0, 1], got 0.0"),
        (["--target", "1.5"], "error: --target must lie in (0, 1], got 1.5"),
        (["--thresholds", "2"], "error: --thresholds must lie in [0, 1], got 2.0"),
        (["--dataset", "no_such_set"], "error: --dataset 'no_such_set': not a registered"),
        (["--output", "/no/such/folder/c.yaml"], "error: --output '/no/such/folder/c.yaml'"),
    ],
)
def test_cli_bad_arguments_are_one_error_line(tmp_path, capsys, flags, message) -> None:
    with pytest.raises(SystemExit) as err:
        _run_cli(tmp_path, "--output", str(tmp_path / "c.yaml"), *flags)
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message)
    assert not (tmp_path / "c.yaml").exists()


def test_cli_runs_as_a_module() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "autofocus.calibrate", "--target", "2"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --target must lie in (0, 1], got 2.0"]
