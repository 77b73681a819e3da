"""projects/autofocus/train_net.py with AUTOFOCUS.FREEZE_DETECTOR on a SNIPER checkpoint:
only loss_focus is trained, the checkpoint written is a plain AutoFocusRCNN whose detector
weights are bit-identical to the SNIPER file's, and bad weights are one error line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_fakes import SLIM_MODEL_OPTS
from retrofit_fakes import TRAIN_NET_OPTS, load_train_net, tiny_dataset

from autofocus.config import setup_cfg
from autofocus.modeling import AutoFocusRCNN, build_autofocus_model
from autofocus.predictor import AutoFocusPredictor
from sniper.engine.checkpoint_fit import check_fits
from sniper.engine.defaults import default_argument_parser
from sniper.modeling import SniperRCNN, build_model


@pytest.fixture()
def dataset(tmp_path):
    with tiny_dataset(tmp_path / "data", f"af_retro_{tmp_path.name}") as name:
        yield name


def _opts(name: str, *extra: str) -> list[str]:
    return [*SLIM_MODEL_OPTS, *TRAIN_NET_OPTS, "DATASETS.TRAIN", f"('{name}',)", *extra]


def _write_sniper(path: Path, name: str, drop: str = "") -> dict[str, torch.Tensor]:
    """A random SniperRCNN of the same MODEL.* settings saved as a training checkpoint."""
    cfg = setup_cfg("", _opts(name, "MODEL.META_ARCHITECTURE", "SniperRCNN"))
    torch.manual_seed(7)
    model = build_model(cfg)
    assert type(model) is SniperRCNN
    state = model.state_dict()
    if drop:
        del state[drop]
    torch.save({"model": state, "iteration": 599}, path)
    return state


def _run(name: str, out: Path, weights: str, *extra: str, flags: tuple[str, ...] = ()):
    args = [*flags] + _opts(
        name,
        "AUTOFOCUS.FREEZE_DETECTOR",
        "True",
        "MODEL.WEIGHTS",
        weights,
        "DATASETS.TEST",
        "()",
        "OUTPUT_DIR",
        str(out),
        *extra,
    )
    return load_train_net().main(default_argument_parser().parse_args(args))


def test_retrofit_trains_the_head_and_writes_the_sniper_detector_unchanged(
    dataset, tmp_path
) -> None:
    sniper = _write_sniper(tmp_path / "sniper.pth", dataset)
    out = tmp_path / "run"
    _run(dataset, out, str(tmp_path / "sniper.pth"))
    lines = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
    losses = {k for line in lines for k in line if k.startswith("loss")}
    assert losses == {"loss_focus"} and lines[0]["loss_focus"] > 0
    saved = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    state = saved["model"]
    detector = {k for k in state if not k.startswith("focus_head.")}
    assert detector == set(sniper)
    assert all(torch.equal(state[k], sniper[k]) for k in sniper)
    head = sorted(k for k in state if k.startswith("focus_head."))
    assert len(head) == 6
    assert [len(g["params"]) for g in saved["optimizer"]["param_groups"]] == [6]

    # a plain AutoFocusRCNN (the joint config) takes the file as it is, cascade and all
    joint_opts = _opts(dataset, "MODEL.WEIGHTS", str(out / "model_final.pth"))
    joint_cfg = setup_cfg("", joint_opts)
    model = build_autofocus_model(joint_cfg)
    assert type(model) is AutoFocusRCNN
    check_fits(str(out / "model_final.pth"), saved, model, {})
    predictor = AutoFocusPredictor(joint_cfg)
    assert all(torch.equal(predictor.model.state_dict()[k], state[k]) for k in head)
    result = predictor(np.full((160, 200, 3), 128, np.uint8))
    assert {"boxes", "scores", "classes", "pixels"} <= set(result)

    # --resume continues from the run's own checkpoint: the detector still matches
    _run(dataset, out, str(tmp_path / "sniper.pth"), "SOLVER.MAX_ITER", "4", flags=("--resume",))
    again = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert again["iteration"] == 3
    assert all(torch.equal(again["model"][k], sniper[k]) for k in sniper)


def test_a_sniper_file_without_a_detector_key_is_one_error_line(dataset, tmp_path, capsys) -> None:
    key = "rpn.head.conv.0.0.weight"
    _write_sniper(tmp_path / "sniper.pth", dataset, drop=key)
    with pytest.raises(SystemExit) as exit_info:
        _run(dataset, tmp_path / "run", str(tmp_path / "sniper.pth"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: AUTOFOCUS.FREEZE_DETECTOR: MODEL.WEIGHTS")
    assert key in err[0] and "(1 detector keys" in err[0]


def test_no_weights_is_one_error_line_naming_the_key(dataset, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _run(dataset, tmp_path / "run", "")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "AUTOFOCUS.FREEZE_DETECTOR = True: needs MODEL.WEIGHTS" in err[0]
