"""Proposal extraction (`sniper.engine.proposals`): mapping back, clipping, the cross-scale
merge and top-k on a fake RPN, and the proposals file that gives negative chips."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import torch

from sniper.config import setup_cfg
from sniper.data.build import build_chip_sampler
from sniper.data.proposals import load_proposals
from sniper.engine.proposals import extract_proposals, write_proposals_file


class FakeRPN(torch.nn.Module):
    """RPN-only stand-in: eval output per input = ``make(h, w)`` (boxes in input px, scores);
    records the inputs."""

    def __init__(self, make) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.make, self.inputs = make, []

    def forward(self, images):
        assert not self.training
        out = []
        for image in images:
            self.inputs.append(image)
            boxes, scores = self.make(*image.shape[-2:])
            boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
            out.append(
                {
                    "boxes": boxes,
                    "scores": torch.tensor(scores, dtype=torch.float32),
                    "labels": torch.ones(len(boxes), dtype=torch.int64),
                }
            )
        return out


def _table(h: int, w: int):
    """A: the same image box at every scale; B: crosses the image edge; C: 10 input px from
    the corner (another image box per scale); D: outside the image (empty once clipped)."""
    s1 = w == 200
    boxes = [
        [0.1 * w, 0.1 * h, 0.3 * w, 0.3 * h],
        [0.8 * w, 0.8 * h, 1.2 * w, 1.2 * h],
        [10, 10, 20, 20],
        [1.5 * w, 1.5 * h, 2 * w, 2 * h],
    ]
    return boxes, [0.9, 0.5, 0.3, 0.95] if s1 else [0.8, 0.6, 0.2, 0.99]


def _grid(h: int, w: int):
    """16 px boxes every 16 px over the input, scores decreasing in raster order."""
    boxes = [[x, y, x + 16, y + 16] for y in range(0, h - 15, 16) for x in range(0, w - 15, 16)]
    return boxes, list(np.linspace(1.0, 0.1, len(boxes)))


def _records(tmp_path, gt=((10, 10, 40, 40),), n=2, h=100, w=200):
    """``n`` images (RGB value (10, 20, 30)); image 0 has the boxes ``gt``, the others none."""
    records = []
    for i in range(n):
        path = str(tmp_path / f"{i}.png")
        cv2.imwrite(path, np.broadcast_to(np.uint8([30, 20, 10]), (h, w, 3)).copy())  # BGR
        boxes = np.asarray(gt if i == 0 else np.zeros((0, 4)), np.float32).reshape(-1, 4)
        records.append(
            {
                "file_name": path,
                "image_id": 100 + i,
                "height": h,
                "width": w,
                "boxes": boxes,
                "classes": np.zeros(len(boxes), np.int64),
            }
        )
    return records


def test_extract_maps_back_clips_merges_and_keeps_top_k(tmp_path, caplog):
    records = _records(tmp_path, n=1)
    records.append({**records[0], "file_name": str(tmp_path / "missing.png"), "image_id": 7})
    model = FakeRPN(_table).train()
    with caplog.at_level(logging.INFO, logger="sniper.engine.proposals"):
        ids, boxes, scores = extract_proposals(
            model, records, [1.0, 0.5], "BGR", max_per_image=10, nms_iou=0.7
        )
    assert model.training and ids == [100, 7]
    assert [tuple(x.shape[-2:]) for x in model.inputs] == [(100, 200), (50, 100)]
    assert model.inputs[0][:, 0, 0].tolist() == [30, 20, 10]  # BGR as asked
    # A at 1.0 (0.9) beats A at 0.5 (0.8); B at 0.5 (0.6) beats B at 1.0; both C stay; D empty.
    expected = [[20, 10, 60, 30], [160, 80, 200, 100], [10, 10, 20, 20], [20, 20, 40, 40]]
    np.testing.assert_array_equal(boxes[0], np.float32(expected))
    np.testing.assert_allclose(scores[0], [0.9, 0.6, 0.3, 0.2])
    assert boxes[1].shape == (0, 4) and scores[1].shape == (0,)
    assert "network-input pixels 25000 in all, per scale [20000, 5000]" in caplog.text
    assert "4 proposals on 2 images" in caplog.text

    model.inputs.clear()
    _, top, top_scores = extract_proposals(model, records[:1], [1.0, 0.5], max_per_image=3)
    np.testing.assert_array_equal(top[0], np.float32(expected[:3]))
    assert model.inputs[0][:, 0, 0].tolist() == [10, 20, 30]  # RGB by default


def test_written_file_gives_negative_chips(tmp_path):
    records = _records(tmp_path, n=3, h=160, w=320)
    cfg = setup_cfg(
        "",
        [
            "SNIPER.TEST_SCALES",
            "[1.0, 0.5]",
            "SNIPER.TEST_VALID_RANGES",
            "[[-1, -1], [-1, -1]]",
            "MODEL.RPN.POST_NMS_TOPK_TEST",
            "150",
            "MODEL.RPN.NMS_THRESH",
            "0.7",
            "SNIPER.TRAIN_SCALES",
            "[1.0]",
            "SNIPER.VALID_RANGES",
            "[[-1, -1]]",
            "SNIPER.CHIP_SIZE",
            "64",
            "SNIPER.NEG_MIN_PROPOSALS",
            "[3]",
            "SNIPER.NEG_CHIPS_PER_IMAGE",
            "2",
            "SNIPER.PROPOSALS_FILE",
            str(tmp_path / "p.npz"),
        ],
    )
    stats = write_proposals_file(cfg, FakeRPN(_grid), records, cfg.SNIPER.PROPOSALS_FILE)
    assert stats["images"] == 3 and stats["proposals_per_image"] == 150
    ids, boxes, _ = extract_proposals(FakeRPN(_grid), records, [1.0, 0.5], max_per_image=150)
    loaded = load_proposals(cfg.SNIPER.PROPOSALS_FILE, records)
    for mine, back in zip(boxes, loaded, strict=True):
        np.testing.assert_array_equal(mine, back)
    chips = build_chip_sampler(cfg, records).epoch_chips(0)
    negative = [c for c in chips if c.negative]
    per_image = np.bincount([c.image_index for c in negative], minlength=3)
    assert per_image.tolist() == [2, 2, 2]  # images without GT contribute too
    assert sum(not c.negative for c in chips) >= 1
