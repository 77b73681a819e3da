"""Shared inputs of the benchmark tests (benchmarks/bench_autofocus.py, bench_peers.py): a
tiny random AutoFocus config, a loader for a benchmark script, and a tiny COCO dataset."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from engine_fakes import write_coco_dataset

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
# a tiny random AutoFocusRCNN: cascade long side 80 -> 1.0x, every FocusPixel fires at t = 0
TINY_AUTOFOCUS = [
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


def load_benchmark(name: str) -> ModuleType:
    """The module of ``benchmarks/<name>.py`` (benchmarks/ on sys.path for its siblings)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tiny_dataset(root: Path, name: str, images: int) -> None:
    """Register ``name``: ``images`` 120 x 160 images, each with a 40 x 30 box of class 0 and a
    12 x 14 box of class 1 (COCO json under ``root``)."""
    write_coco_dataset(
        root,
        name,
        [(120, 160)] * images,
        {i: [([20, 30, 40, 30], 0), ([90, 50, 12, 14], 1)] for i in range(images)},
    )
