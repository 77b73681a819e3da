"""Inputs of the retrofit tests (AUTOFOCUS.FREEZE_DETECTOR): tiny AutoFocus model settings
and a two-chip training batch with FocusPixel boxes (128 x 128 chips, chip px)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch
from engine_fakes import restore_loggers, unregister, write_coco_dataset

# a tiny MobileNetV2-FPN AutoFocusRCNN (random ImageNet-free weights, BN in the trunk)
TINY_MODEL = [
    "MODEL.META_ARCHITECTURE",
    "AutoFocusRCNN",
    "MODEL.BACKBONE.NAME",
    "mobilenet_v2_fpn",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "MODEL.NUM_CLASSES",
    "3",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
    "200",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "50",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "200",
    "MODEL.RPN.POST_NMS_TOPK_TEST",  # >= TEST.MAX_DETS_PER_IMAGE
    "100",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "32",
    "AUTOFOCUS.HEAD_CHANNELS",
    "8",
]


def training_batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Two uint8 (3, 128, 128) chips: one with a valid box, a small box and FocusPixel
    boxes; one negative chip with an ignore region (targets as the chip mapper gives)."""
    gen = torch.Generator().manual_seed(1)
    images = [(torch.rand(3, 128, 128, generator=gen) * 255).to(torch.uint8) for _ in range(2)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0]]),
            "labels": torch.tensor([1]),
            "ignore_boxes": torch.tensor([[70.0, 70.0, 80.0, 78.0]]),
            "valid_range": torch.tensor([32.0, float("inf")]),
            "focus_boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0], [70.0, 70.0, 80.0, 78.0]]),
            "focus_sizes": torch.tensor([43.8, 8.9]),
            "focus_ignore_boxes": torch.zeros(0, 4),
        },
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "ignore_boxes": torch.tensor([[5.0, 5.0, 120.0, 120.0]]),
            "valid_range": torch.tensor([10.0, 80.0]),
        },
    ]
    return images, targets


# train_net on a tiny COCO dataset (with SLIM_MODEL_OPTS): 96 px chips at 1.0x, 2 per batch,
# a cascade of long side 100 -> 1.0x that turns every FocusPixel on (t = 0)
TRAIN_NET_OPTS = [
    "MODEL.META_ARCHITECTURE",
    "AutoFocusRCNN",
    "AUTOFOCUS.HEAD_CHANNELS",
    "8",
    "MODEL.NUM_CLASSES",
    "2",
    "SNIPER.TRAIN_SCALES",
    "[1.0]",
    "SNIPER.VALID_RANGES",
    "[[-1, -1]]",
    "SNIPER.NEG_MIN_PROPOSALS",
    "[1]",
    "SNIPER.CHIP_SIZE",
    "96",
    "DATALOADER.NUM_WORKERS",
    "0",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "3",
    "SOLVER.STEPS",
    "(2,)",
    "SOLVER.WARMUP_ITERS",
    "1",
    "SOLVER.CHECKPOINT_PERIOD",
    "2",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST",  # >= TEST.MAX_DETS_PER_IMAGE
    "100",
    "AUTOFOCUS.SCALES",
    "[[100, 100], 1.0]",
    "AUTOFOCUS.VALID_RANGES",
    "[[40, -1], [-1, 40]]",
    "AUTOFOCUS.THRESHOLDS",
    "[0.0]",
    "AUTOFOCUS.DILATIONS",
    "[1]",
    "AUTOFOCUS.MIN_SIZES",
    "[2]",
]
# per image i of the tiny dataset: ([x, y, w, h], category) in image px
TRAIN_NET_GT = {i: [([10 + 7 * i, 12, 30, 24], 0), ([90, 60 + 5 * i, 50, 60], 1)] for i in range(3)}

TRAIN_NET = Path(__file__).resolve().parents[2] / "projects" / "autofocus" / "train_net.py"


def load_train_net() -> ModuleType:
    """``projects/autofocus/train_net.py`` as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("autofocus_train_net", TRAIN_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextmanager
def tiny_dataset(root: Path, name: str) -> Iterator[str]:
    """Register ``name``: three 160 x 200 images with the boxes of ``TRAIN_NET_GT`` (COCO
    json under ``root``), loggers restored and the name unregistered afterwards."""
    write_coco_dataset(root, name, [(160, 200)] * 3, TRAIN_NET_GT)
    with restore_loggers():
        yield name
    unregister(name)
