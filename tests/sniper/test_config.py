"""Config: comments on every key, unknown-key errors, _BASE_ inheritance, validation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sniper.config import (
    CfgNode,
    add_sniper_config,
    get_cfg,
    key_comments,
    parse_scale_list,
    parse_valid_ranges,
    setup_cfg,
    validate_cfg,
)


def _leaf_keys(node: CfgNode, prefix: str = "") -> list[str]:
    keys = []
    for name, value in node.items():
        if isinstance(value, CfgNode):
            keys.extend(_leaf_keys(value, f"{prefix}{name}."))
        else:
            keys.append(prefix + name)
    return keys


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_every_key_has_a_comment() -> None:
    comments = key_comments()
    keys = _leaf_keys(add_sniper_config(get_cfg()))
    assert len(keys) > 60
    missing = [k for k in keys if len(comments.get(k, "")) < 8]
    assert missing == []


def test_nested_nodes_share_the_subclass() -> None:
    cfg = add_sniper_config(get_cfg())
    assert isinstance(cfg.MODEL.BACKBONE, CfgNode)
    assert isinstance(cfg.SNIPER, CfgNode)


def test_defaults_follow_design() -> None:
    cfg = add_sniper_config(get_cfg())
    assert parse_scale_list(cfg.SNIPER.TRAIN_SCALES) == [3.0, 1.667, (512.0, 512.0)]
    assert parse_valid_ranges(cfg.SNIPER.VALID_RANGES) == [
        (0.0, 80.0),
        (32.0, 150.0),
        (120.0, math.inf),
    ]
    assert cfg.SNIPER.NEG_MIN_PROPOSALS == [25, 10, 10]
    assert parse_scale_list(cfg.SNIPER.TEST_SCALES) == [
        (1400.0, 2000.0),
        (800.0, 1280.0),
        (512.0, 512.0),
    ]
    assert cfg.SNIPER.CHIP_SIZE == 512 and cfg.SNIPER.CHIP_STRIDE == 32
    assert cfg.SOLVER.MOMENTUM == 0.9 and cfg.SOLVER.WEIGHT_DECAY == 1e-4
    validate_cfg(cfg)


def test_unknown_key_in_yaml_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.yaml", "MODEL:\n  BACKBONE:\n    NAMEE: resnet18_fpn\n")
    with pytest.raises(KeyError, match="MODEL.BACKBONE.NAMEE"):
        setup_cfg(path, [])


def test_unknown_key_in_base_yaml_is_named(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", "SNIPER:\n  CHIP_SIZEE: 256\n")
    child = _write(tmp_path / "child.yaml", "_BASE_: base.yaml\nSOLVER:\n  BASE_LR: 0.01\n")
    with pytest.raises(KeyError, match="SNIPER.CHIP_SIZEE"):
        setup_cfg(child, [])


@pytest.mark.parametrize("key", ["SNIPER.NOPE", "NOPE.CHIP_SIZE", "MODEL.RPN.NMS_THRESH.X"])
def test_unknown_key_on_command_line_is_named(key: str) -> None:
    with pytest.raises(KeyError, match=key.replace(".", r"\.")):
        setup_cfg("", [key, "1"])


def test_odd_override_list_is_rejected() -> None:
    with pytest.raises(ValueError, match="odd length"):
        setup_cfg("", ["SOLVER.BASE_LR"])


def test_base_inheritance_and_override_order(tmp_path: Path) -> None:
    _write(
        tmp_path / "base.yaml",
        "SNIPER:\n  CHIP_SIZE: 256\nSOLVER:\n  BASE_LR: 0.01\n  MAX_ITER: 10\n",
    )
    child = _write(
        tmp_path / "child.yaml",
        "_BASE_: base.yaml\nSOLVER:\n  BASE_LR: 0.005\n"
        "MODEL:\n  BACKBONE:\n    NAME: mobilenet_v2_fpn\n",
    )
    cfg = setup_cfg(
        child,
        [
            "SOLVER.MAX_ITER",
            "20",
            "SNIPER.TRAIN_SCALES",
            "[2.0, [512, 512]]",
            "SNIPER.VALID_RANGES",
            "[[-1, 100], [80, -1]]",
            "SNIPER.NEG_MIN_PROPOSALS",
            "[25, 10]",
        ],
    )
    assert cfg.SNIPER.CHIP_SIZE == 256
    assert cfg.SOLVER.BASE_LR == 0.005
    assert cfg.SOLVER.MAX_ITER == 20
    assert cfg.MODEL.BACKBONE.NAME == "mobilenet_v2_fpn"
    assert parse_scale_list(cfg.SNIPER.TRAIN_SCALES) == [2.0, (512.0, 512.0)]
    assert cfg.is_frozen()


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("SNIPER.VALID_RANGES", "[[-1, 80], [32, 150]]", "SNIPER.VALID_RANGES"),
        ("SNIPER.TEST_VALID_RANGES", "[[-1, 90]]", "SNIPER.TEST_VALID_RANGES"),
        ("SNIPER.CHIP_SIZE", "0", "SNIPER.CHIP_SIZE"),
        ("SNIPER.CHIP_STRIDE", "1024", "SNIPER.CHIP_STRIDE"),
        ("SNIPER.NEG_MIN_PROPOSALS", "[25, 10]", "SNIPER.NEG_MIN_PROPOSALS"),
        ("SNIPER.TRAIN_SCALES", "[3.0, 1.667, [1, 2, 3]]", "SNIPER.TRAIN_SCALES"),
        ("SNIPER.TEST_SCALES", "[-1.0, 1.0, 2.0]", "SNIPER.TEST_SCALES"),
        ("SNIPER.VALID_RANGES", "[[-1, 80], [150, 32], [120, -1]]", "SNIPER.VALID_RANGES"),
        ("SNIPER.TEST_NMS", "softer", "SNIPER.TEST_NMS"),
        ("SNIPER.RPN_NEG_IOU", "0.6", "SNIPER.RPN_NEG_IOU"),
        ("MODEL.BACKBONE.NORM", "LN", "MODEL.BACKBONE.NORM"),
        ("MODEL.ANCHOR_SIZES", "[[32], [64], [128], [256]]", "MODEL.ANCHOR_SIZES"),
        ("MODEL.PIXEL_STD", "[1.0, 0.0, 1.0]", "MODEL.PIXEL_STD"),
        ("INPUT.FORMAT", "YUV", "INPUT.FORMAT"),
        ("SOLVER.AMP.DTYPE", "float8", "SOLVER.AMP.DTYPE"),
    ],
)
def test_validate_names_key_and_value(key: str, value: str, named: str) -> None:
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        setup_cfg("", [key, value])


def test_min_level_changes_expected_anchor_levels() -> None:
    cfg = setup_cfg(
        "", ["MODEL.FPN.MIN_LEVEL", "3", "MODEL.ANCHOR_SIZES", "[[64], [128], [256], [512]]"]
    )
    assert len(cfg.MODEL.ANCHOR_SIZES) == 4


def test_parse_scale_list_rejects_bad_entries() -> None:
    assert parse_scale_list([2, [800, 1333]]) == [2.0, (800.0, 1333.0)]
    for bad in ([True], ["x"], [[1, 2, 3]], [0.0], [[0, 512]]):
        with pytest.raises(ValueError):
            parse_scale_list(bad)


def test_parse_valid_ranges_open_ends() -> None:
    assert parse_valid_ranges([[-1, -1], [5, 7]]) == [(0.0, math.inf), (5.0, 7.0)]
    with pytest.raises(ValueError):
        parse_valid_ranges([[10, 5]])
    with pytest.raises(ValueError):
        parse_valid_ranges([5])
