"""``python -m sniper.tools.bn_to_sn``: a BatchNorm checkpoint becomes an SN one whose layers
carry the BN affine and statistics, importance weights equal; errors are one line."""

from __future__ import annotations

import pytest
import torch
from demo_fakes import TINY
from torch import nn

from sniper.config import setup_cfg
from sniper.modeling import build_model
from sniper.modeling.state_dict import load_model_weights
from sniper.modeling.switchable_norm import SwitchNorm2d
from sniper.tools import bn_to_sn

OPTS = TINY[:8]  # the tiny MobileNetV2-FPN


def test_bn_checkpoint_becomes_sn_with_its_statistics(tmp_path, capsys):
    torch.manual_seed(0)
    bn_model = build_model(setup_cfg("", OPTS))
    with torch.no_grad():
        for mod in bn_model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_()
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 2.0)
    torch.save({"model": bn_model.state_dict()}, tmp_path / "bn.pth")
    out = tmp_path / "sn.pth"
    argv = ["--input", str(tmp_path / "bn.pth"), "--output", str(out), *OPTS]
    assert bn_to_sn.main([*argv, "MODEL.BACKBONE.NORM", "SN"]) == 0
    assert "SwitchNorm2d layers" in capsys.readouterr().out
    sn_model = build_model(setup_cfg("", [*OPTS, "MODEL.BACKBONE.NORM", "SN"]))
    report = load_model_weights(sn_model, str(out))
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    bn_layers = dict(bn_model.named_modules())
    checked = 0
    for name, mod in sn_model.named_modules():
        if isinstance(mod, SwitchNorm2d):
            bn = bn_layers[name]
            torch.testing.assert_close(mod.running_mean, bn.running_mean)
            torch.testing.assert_close(mod.running_var, bn.running_var)
            torch.testing.assert_close(mod.weight, bn.weight)
            torch.testing.assert_close(mod.importance()[0], torch.full((3,), 1 / 3))
            checked += 1
    assert checked > 10


def test_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        bn_to_sn.main(["--input", "x.pth", "--output", str(tmp_path / "o.pth"), *OPTS])
    assert info.value.code == 2 and "no SN norm" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        bn_to_sn.main(
            ["--input", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "o.pth"),
             *OPTS, "MODEL.BACKBONE.NORM", "SN"]
        )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err[-1].startswith("error:") and "missing.pth" in err[-1]
    assert not (tmp_path / "o.pth").exists()
