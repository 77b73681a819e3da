"""Fakes for the engine tests: a chip loader with the `sniper.data.build` interface, a tiny
detector with the model interface, trainers that use them, and a config factory."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sniper.config import setup_cfg
from sniper.engine.trainer import SniperTrainer

# The slim real model: MobileNetV2-FPN with narrow heads and few samples (64x64 chips).
SLIM_MODEL_OPTS = [
    "MODEL.BACKBONE.NAME",
    "mobilenet_v2_fpn",
    "MODEL.NUM_CLASSES",
    "3",
    "MODEL.FPN.OUT_CHANNELS",
    "32",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "64",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN",
    "200",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "100",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE",
    "64",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "32",
]


# One scale, every box valid, 96 px chips on a stride of 32, no loader workers: the chip
# settings of the tests that train on tiny COCO-json datasets.
ONE_SCALE_CHIP_OPTS = [
    "SNIPER.TRAIN_SCALES",
    "[1.0]",
    "SNIPER.VALID_RANGES",
    "[[-1, -1]]",
    "SNIPER.NEG_MIN_PROPOSALS",
    "[1]",
    "SNIPER.CHIP_SIZE",
    "96",
    "SNIPER.CHIP_STRIDE",
    "32",
    "DATALOADER.NUM_WORKERS",
    "0",
]

# Boxes ([x, y, w, h], category) of four 160 x 200 images for `write_coco_dataset`.
FOUR_IMAGE_GT = {
    i: [([10 + 7 * i, 12, 30, 24], 0), ([90, 60 + 5 * i, 50, 60], 1), ([20, 100, 12, 14], 1)]
    for i in range(4)
}


def make_cfg(output_dir: Any, *opts: Any) -> Any:
    """A frozen config writing to `output_dir`, with short schedules and `opts` on top."""
    base = [
        "OUTPUT_DIR",
        str(output_dir),
        "SOLVER.MAX_ITER",
        "6",
        "SOLVER.STEPS",
        "(4,)",
        "SOLVER.WARMUP_ITERS",
        "2",
        "SOLVER.BASE_LR",
        "0.01",
        "SOLVER.IMS_PER_BATCH",
        "2",
        "SOLVER.CHECKPOINT_PERIOD",
        "3",
        "MODEL.NUM_CLASSES",
        "3",
    ]
    return setup_cfg("", [*base, *(str(o) for o in opts)])


class FakeChipLoader:
    """Infinite batches of `chips` random (3, size, size) uint8 chips with 1-2 boxes each.

    Batch `b` of epoch `e` depends only on (seed, e, b); an epoch has `batches` batches.
    `state_dict()` is the position of the next batch, as the real loader promises.
    """

    def __init__(self, seed: int = 0, chips: int = 2, size: int = 64, batches: int = 4) -> None:
        self.seed, self.chips, self.size, self.batches = seed, chips, size, batches
        self.epoch = 0
        self.batch_in_epoch = 0

    def __iter__(self) -> FakeChipLoader:
        return self

    def __next__(self) -> list[tuple[Tensor, dict[str, Tensor]]]:
        gen = torch.Generator().manual_seed(
            self.seed * 1_000_003 + self.epoch * 1009 + self.batch_in_epoch
        )
        batch = [self._chip(gen) for _ in range(self.chips)]
        self.batch_in_epoch += 1
        if self.batch_in_epoch == self.batches:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        return batch

    def _chip(self, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        image = torch.randint(0, 256, (3, self.size, self.size), generator=gen, dtype=torch.uint8)
        n = int(torch.randint(1, 3, (1,), generator=gen))
        xy = torch.rand(n, 2, generator=gen) * (self.size / 2)
        wh = 8 + torch.rand(n, 2, generator=gen) * (self.size / 2 - 8)
        return image, {
            "boxes": torch.cat([xy, xy + wh], dim=1),
            "labels": torch.randint(1, 4, (n,), generator=gen),
            "ignore_boxes": torch.zeros(0, 4),
            "valid_range": torch.tensor([0.0, float(self.size) * 2]),
        }

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])


class TinyDetector(nn.Module):
    """Conv + BN + linear "detector" with the model interface of `sniper.modeling`.

    Train mode: two losses that use a random subset of pixels (torch's global RNG, like the
    real samplers); `nan_at` makes the call of that index return a NaN `loss_box_reg`.
    Eval mode: one detection per image, the box of the whole image.
    """

    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 5)
        self.nan_at = nan_at
        self.calls = 0

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        x = torch.stack([img.float() / 255.0 for img in images])
        feats = self.bn(self.conv(x)).relu().flatten(2)
        keep = torch.randperm(feats.shape[-1])[: feats.shape[-1] // 2]
        out = self.head(feats[:, :, keep].mean(-1))
        if not self.training:
            h, w = images[0].shape[-2:]
            box = torch.tensor([[0.0, 0.0, float(w), float(h)]])
            label = torch.ones(1, dtype=torch.int64)
            return [{"boxes": box, "scores": torch.ones(1), "labels": label} for _ in images]
        assert targets is not None
        boxes = torch.stack([t["boxes"][0] for t in targets]) / 64.0
        loss_cls = (out[:, 0] - 1.0).pow(2).mean()
        loss_box = (out[:, 1:] - boxes).abs().mean()
        if self.nan_at is not None and self.calls == self.nan_at:
            loss_box = loss_box * float("nan")
        self.calls += 1
        return {"loss_classifier": loss_cls, "loss_box_reg": loss_box}


class TinyTrainer(SniperTrainer):
    """SniperTrainer on `TinyDetector` and `FakeChipLoader` (LOG_PERIOD 2)."""

    LOG_PERIOD = 2
    NAN_AT: int | None = None

    @classmethod
    def build_model(cls, cfg: Any) -> nn.Module:
        return TinyDetector(nan_at=cls.NAN_AT)

    @classmethod
    def build_train_loader(cls, cfg: Any) -> FakeChipLoader:
        return FakeChipLoader(seed=cfg.SEED, chips=cfg.SOLVER.IMS_PER_BATCH)


class SlimTrainer(SniperTrainer):
    """SniperTrainer on the real model (configure it with SLIM_MODEL_OPTS), fake chips."""

    LOG_PERIOD = 2

    @classmethod
    def build_train_loader(cls, cfg: Any) -> FakeChipLoader:
        return FakeChipLoader(seed=cfg.SEED, chips=cfg.SOLVER.IMS_PER_BATCH)


def write_coco_dataset(
    root: Any,
    name: str,
    sizes: list[tuple[int, int]],
    boxes: dict[int, list[tuple[list[float], int]]],
    categories: tuple[str, ...] = ("a", "b"),
) -> list[dict]:
    """Write gray PNGs of `sizes` (h, w) and a COCO json under `root`, register `name`.

    `boxes[i]` lists ([x, y, w, h], category index) of image i; image ids are 10 + i and
    category ids 5, 7, 9, ... (non-contiguous on purpose). Returns the loaded records.
    """
    import json
    import os

    import cv2
    import numpy as np

    from sniper.data.catalog import DatasetCatalog
    from sniper.data.coco import register_coco_instances

    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    images, anns = [], []
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(os.path.join(root, "images", f"{i}.png"), np.full((h, w, 3), 128, np.uint8))
        images.append({"id": 10 + i, "file_name": f"{i}.png", "height": h, "width": w})
        for bbox, cat in boxes.get(i, []):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": 10 + i,
                    "category_id": 5 + 2 * cat,
                    "bbox": list(bbox),
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    cats = [{"id": 5 + 2 * k, "name": n} for k, n in enumerate(categories)]
    json_file = os.path.join(root, "instances.json")
    with open(json_file, "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    register_coco_instances(name, json_file, os.path.join(root, "images"))
    return DatasetCatalog.get(name)


def unregister(name: str) -> None:
    """Remove `name` from both catalogs."""
    from sniper.data.catalog import DatasetCatalog, MetadataCatalog

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


class restore_loggers:
    """Context manager undoing `default_setup`'s logging changes (handlers, propagate=False)
    on the package loggers, so that later tests' caplog still sees their records."""

    NAMES = ("sniper", "chipping", "fvcore")

    def __enter__(self) -> restore_loggers:
        import logging

        self._saved = {
            n: (
                list(logging.getLogger(n).handlers),
                logging.getLogger(n).propagate,
                logging.getLogger(n).level,
            )
            for n in self.NAMES
        }
        return self

    def __exit__(self, *exc: Any) -> None:
        import logging

        for name, (handlers, propagate, level) in self._saved.items():
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if h not in handlers]:
                logger.removeHandler(handler)
                handler.close()
            logger.propagate, logger.level = propagate, level
