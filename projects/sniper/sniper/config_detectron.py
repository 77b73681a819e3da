"""Detectron (``.pkl``) weights in the config: the input conventions they need.

Detectron's networks were trained on BGR images minus the BGR mean [102.9801, 115.9465,
122.7717] with std 1 (0-255 scale), and its MSRA ResNets stride in the 1x1 conv of each
stage's first block. Here `NoResizeTransform` always hands the network RGB (INPUT.FORMAT
only says what the caller passes; `sniper.modeling.detectron_weights` flips conv1 to RGB on
load), so a config that loads a Detectron file wants ``MODEL.PIXEL_MEAN =
DETECTRON_PIXEL_MEAN``, ``MODEL.PIXEL_STD = [1, 1, 1]`` and ``MODEL.BACKBONE.STRIDE_IN_1X1
True`` (configs/sniper/coco_R50_FPN_detectron.yaml). Other values are allowed (fine-tuning
may choose them) but warned about by `validate_cfg`. Imports no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "DETECTRON_PIXEL_MEAN",
    "DETECTRON_PIXEL_STD",
    "detectron_input_warnings",
    "detectron_pixel_problem",
]

# Detectron's BGR PIXEL_MEANS in RGB order, and its std (0-255 scale).
DETECTRON_PIXEL_MEAN = (122.7717, 115.9465, 102.9801)
DETECTRON_PIXEL_STD = (1.0, 1.0, 1.0)


def detectron_pixel_problem(pixel_mean: Sequence[float], pixel_std: Sequence[float]) -> str:
    """Why normalizing by `pixel_mean` / `pixel_std` (RGB, 0-255) is not what a Detectron
    network was trained on; "" when it is (within 1e-3)."""
    mean, std = [float(v) for v in pixel_mean], [float(v) for v in pixel_std]
    expected = [*DETECTRON_PIXEL_MEAN, *DETECTRON_PIXEL_STD]
    if len(mean) == len(std) == 3 and all(
        abs(a - b) <= 1e-3 for a, b in zip(mean + std, expected, strict=True)
    ):
        return ""
    return (
        f"Detectron weights expect MODEL.PIXEL_MEAN {list(DETECTRON_PIXEL_MEAN)} (Detectron's "
        f"BGR mean in RGB order; conv1 is flipped to RGB on load, whatever INPUT.FORMAT) and "
        f"MODEL.PIXEL_STD {list(DETECTRON_PIXEL_STD)}, got {mean} and {std}"
    )


def detectron_input_warnings(cfg: Any) -> list[str]:
    """Warnings for a config that loads Detectron ``.pkl`` weights (MODEL.WEIGHTS or
    MODEL.BACKBONE.WEIGHTS) with another pixel normalization than Detectron's, or with a
    ResNet that strides in the 3x3 conv (Detectron's MSRA ResNets stride in the 1x1);
    [] when no Detectron file is named or everything matches."""
    m = cfg.MODEL
    files = [
        f"{key} {value!r}"
        for key, value in (
            ("MODEL.WEIGHTS", m.WEIGHTS),
            ("MODEL.BACKBONE.WEIGHTS", m.BACKBONE.WEIGHTS),
        )
        if isinstance(value, str) and value.lower().endswith(".pkl")
    ]
    if not files:
        return []
    problems = [detectron_pixel_problem(m.PIXEL_MEAN, m.PIXEL_STD)]
    if not m.BACKBONE.STRIDE_IN_1X1 and m.BACKBONE.NAME in ("resnet50_fpn", "resnet101_fpn"):
        problems.append(
            "Detectron's ResNets stride in the 1x1 conv of each stage's first block: set "
            "MODEL.BACKBONE.STRIDE_IN_1X1 True"
        )
    return [f"{' and '.join(files)} is a Detectron file: {p}" for p in problems if p]
