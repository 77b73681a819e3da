"""AUTOFOCUS config: a comment on every key, docs/design.md defaults, validation, YAML files."""

from __future__ import annotations

from pathlib import Path

import pytest

from autofocus.config import add_autofocus_config, key_comments, setup_cfg
from autofocus.params import CascadeParams, cascade_params_from_cfg
from sniper.config import CfgNode, add_sniper_config, get_cfg

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "autofocus"


def _leaf_keys(node: CfgNode, prefix: str = "") -> list[str]:
    keys = []
    for name, value in node.items():
        if isinstance(value, CfgNode):
            keys.extend(_leaf_keys(value, f"{prefix}{name}."))
        else:
            keys.append(prefix + name)
    return keys


def test_every_autofocus_key_has_a_comment() -> None:
    cfg = add_autofocus_config(add_sniper_config(get_cfg()))
    keys = _leaf_keys(cfg.AUTOFOCUS, "AUTOFOCUS.")
    assert len(keys) >= 13
    comments = key_comments()
    assert "AUTOFOCUS" in comments  # the node itself
    missing = [k for k in keys if len(comments.get(k, "")) < 8]
    assert missing == []


def test_defaults_follow_design() -> None:
    cfg = setup_cfg("", [])
    af = cfg.AUTOFOCUS
    assert (af.POS_MIN_SIZE, af.POS_MAX_SIZE, af.IGNORE_MAX_SIZE) == (5.0, 64.0, 90.0)
    assert (af.FEATURE, af.HEAD_CHANNELS, af.LOSS_WEIGHT, af.BORDER_DELTA) == ("p4", 256, 1.0, 10.0)
    params = cascade_params_from_cfg(cfg)
    assert params == CascadeParams(
        scales=((512.0, 512.0), (800.0, 1280.0), (1400.0, 2000.0)),
        valid_ranges=((75, -1), (32, 180), (-1, 75)),
        thresholds=(0.02, 0.2),
        dilations=(3, 3),
        min_sizes=(16, 20),
        border_delta=10.0,
    )


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["AUTOFOCUS.POS_MAX_SIZE", "100.0"], "POS_MAX_SIZE"),
        (["AUTOFOCUS.FEATURE", "p7"], "FEATURE"),
        (["AUTOFOCUS.VALID_RANGES", "[[75, -1]]"], "VALID_RANGES"),
        (["AUTOFOCUS.THRESHOLDS", "[0.1]"], "THRESHOLDS"),
        (["AUTOFOCUS.THRESHOLDS", "[0.1, 2.0]"], "THRESHOLDS"),
        (["AUTOFOCUS.MIN_SIZES", "[16, -1]"], "MIN_SIZES"),
        (["AUTOFOCUS.SCALES", "[[512, 512], 0.0, 2.0]"], "SCALES"),
        (["AUTOFOCUS.BORDER_DELTA", "-1.0"], "BORDER_DELTA"),
    ],
)
def test_bad_values_name_the_key(opts: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        setup_cfg("", opts)


def test_unknown_key_is_named() -> None:
    with pytest.raises(KeyError, match="AUTOFOCUS.NO_SUCH_KEY"):
        setup_cfg("", ["AUTOFOCUS.NO_SUCH_KEY", "1"])


@pytest.mark.parametrize("name", ["synthetic_mobilenet.yaml", "coco_R50_FPN.yaml"])
def test_shipped_configs_load(name: str) -> None:
    cfg = setup_cfg(str(CONFIGS / name), [])
    assert cfg.MODEL.META_ARCHITECTURE == "AutoFocusRCNN"
    params = cascade_params_from_cfg(cfg)
    assert params.num_scales == 3 and len(params.thresholds) == 2


def test_synthetic_config_uses_the_quickstart_scales() -> None:
    cfg = setup_cfg(str(CONFIGS / "synthetic_mobilenet.yaml"), [])
    assert cfg.AUTOFOCUS.SCALES == [[512, 512], 1.0, 2.0]
    assert cfg.AUTOFOCUS.HEAD_CHANNELS == 64
    assert cfg.DATASETS.TRAIN == ("synthetic_digits_train",)
