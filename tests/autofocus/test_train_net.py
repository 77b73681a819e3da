"""projects/autofocus/train_net.py: a few iterations with the real chip loader and the slim
AutoFocusRCNN, the final cascade evaluation, then `--eval-only` on the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_fakes import SLIM_MODEL_OPTS
from retrofit_fakes import TRAIN_NET_OPTS, load_train_net, tiny_dataset

from sniper.engine.defaults import default_argument_parser

OPTS = TRAIN_NET_OPTS


@pytest.fixture()
def dataset(tmp_path):
    with tiny_dataset(tmp_path / "data", f"af_tn_{tmp_path.name}") as name:
        yield name


def _opts(name: str, out: Path) -> list[str]:
    return [
        *SLIM_MODEL_OPTS,
        *OPTS,
        "OUTPUT_DIR",
        str(out),
        "DATASETS.TRAIN",
        f"('{name}',)",
        "DATASETS.TEST",
        f"('{name}',)",
    ]


def test_train_then_eval_only(dataset, tmp_path) -> None:
    train_net = load_train_net()
    out = tmp_path / "run"
    results = train_net.main(default_argument_parser().parse_args(_opts(dataset, out)))
    res = results[dataset]
    assert {"AP", "APs"} <= set(res["bbox"])
    speed = res["speed"]
    # threshold 0 turns every FocusPixel on: both scales see the whole image
    # (100 x 80 at the coarse scale, 200 x 160 at 1.0x, per image)
    assert speed["pixels_scale0"] == 3 * 100 * 80 and speed["pixels_scale1"] == 3 * 200 * 160
    assert speed["full_pyramid_pixels"] == 3 * (100 * 80 + 200 * 160)
    assert speed["pixel_fraction"] == pytest.approx(1.0)
    # the 30 x 24 boxes (size 26.8 < 40) need the finer scale; t = 0 chips whole images
    focus = res["focus"]
    assert focus["responsible_boxes_t0"] == 3 and focus["missing_rate_t0"] == 0.0
    assert focus["empty_rate_t0"] == pytest.approx(1 - 30 * 24 / (160 * 200))
    lines = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
    assert "loss_focus" in lines[0] and lines[0]["loss_focus"] > 0
    assert (out / "model_final.pth").is_file()

    eval_args = default_argument_parser().parse_args(
        [
            "--eval-only",
            *_opts(dataset, tmp_path / "eval"),
            "MODEL.WEIGHTS",
            str(out / "model_final.pth"),
        ]
    )
    again = train_net.main(eval_args)
    assert again[dataset]["bbox"] == pytest.approx(res["bbox"], nan_ok=True)
