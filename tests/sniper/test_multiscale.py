"""MultiScaleInference with fake detectors: back-mapping, valid ranges, pixel accounting,
batching, cross-scale merging, and tiling (tiled == untiled for objects smaller than the
tile overlap)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from sniper.config import add_sniper_config, get_cfg
from sniper.inference.multiscale import MultiScaleInference, tile_boxes


class FixedBoxModel(nn.Module):
    """Detects one fixed box (input px) in every input; records the input shapes per call."""

    def __init__(self, box=(10.0, 20.0, 50.0, 60.0), score: float = 0.9, label: int = 2):
        super().__init__()
        self.box, self.score, self.label = box, score, label
        self.calls: list[list[tuple[int, ...]]] = []

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        assert not self.training
        self.calls.append([tuple(im.shape) for im in images])
        return [
            {
                "boxes": torch.tensor([self.box]),
                "scores": torch.tensor([self.score]),
                "labels": torch.tensor([self.label]),
            }
            for _ in images
        ]


class BlobModel(nn.Module):
    """A local, translation-equivariant 'detector': connected components of bright pixels.

    Label = 1 + brightest channel of the blob, score = 0.5 + 0.4 * mean intensity / 255.
    """

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out = []
        for im in images:
            hwc = im.permute(1, 2, 0).numpy().astype(np.float32)
            mask = (hwc.max(axis=2) > 127).astype(np.uint8)
            n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            boxes, scores, labels = [], [], []
            for k in range(1, n):
                x, y, w, h = stats[k, :4]
                pixels = hwc[comp == k]
                boxes.append([x, y, x + w, y + h])
                scores.append(0.5 + 0.4 * pixels.max(axis=1).mean() / 255)
                labels.append(1 + int(pixels.mean(axis=0).argmax()))
            out.append(
                {
                    "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    "scores": torch.tensor(scores, dtype=torch.float32),
                    "labels": torch.tensor(labels, dtype=torch.int64),
                }
            )
        return out


def _image(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


def test_back_mapping_factor_and_pixels_exact() -> None:
    model = FixedBoxModel()
    msi = MultiScaleInference(model, [2.0], [[-1, -1]])
    (out,) = msi([_image(100, 150)])
    np.testing.assert_array_equal(out["boxes"].numpy(), [[5.0, 10.0, 25.0, 30.0]])
    assert out["classes"].tolist() == [1] and out["classes"].dtype == torch.int64
    assert out["boxes"].dtype == torch.float32
    assert out["scores"].tolist() == pytest.approx([0.9])
    assert model.calls == [[(3, 200, 300)]]
    assert out["pixels"] == 200 * 300 and out["pixels_per_scale"] == [60000]
    assert out["inputs_per_scale"] == [1]


def test_pair_scale_uses_factor_not_rounded_ratio() -> None:
    model = FixedBoxModel()
    msi = MultiScaleInference(model, [(64, 128)], [[-1, -1]])
    (out,) = msi([_image(100, 150)])
    f = min(64 / 100, 128 / 150)  # 0.64 -> canvas 64 x 96
    assert model.calls == [[(3, 64, 96)]]
    np.testing.assert_allclose(out["boxes"].numpy(), [[10 / f, 20 / f, 50 / f, 60 / f]], rtol=1e-6)
    assert out["pixels"] == 64 * 96


def test_valid_ranges_half_open_in_image_px() -> None:
    # The 40 px input box is 40, 20 and 80 image px at factors 1, 2 and 0.5.
    scales, image = [1.0, 2.0, 0.5], _image(120, 160)
    msi = MultiScaleInference(FixedBoxModel(), scales, [[0, 30], [0, 30], [0, 30]])
    (out,) = msi([image])
    np.testing.assert_array_equal(out["boxes"].numpy(), [[5.0, 10.0, 25.0, 30.0]])
    msi = MultiScaleInference(FixedBoxModel(), scales, [[40, 41], [-1, 20], [80, -1]])
    (out,) = msi([image])
    np.testing.assert_array_equal(
        out["boxes"].numpy(), [[10.0, 20.0, 50.0, 60.0], [20.0, 40.0, 100.0, 120.0]]
    )
    assert out["pixels_per_scale"] == [120 * 160, 240 * 320, 60 * 80]
    assert out["pixels"] == sum(out["pixels_per_scale"])


def test_boxes_clipped_to_image_before_range() -> None:
    model = FixedBoxModel(box=(40.0, 40.0, 90.0, 90.0))
    # Clipped to the 60 x 60 image the box is 20 x 20: outside [0, 20), inside [0, 21).
    (out,) = MultiScaleInference(model, [1.0], [[-1, 20]])([_image(60, 60)])
    assert len(out["boxes"]) == 0
    (out,) = MultiScaleInference(model, [1.0], [[-1, 21]])([_image(60, 60)])
    np.testing.assert_array_equal(out["boxes"].numpy(), [[40.0, 40.0, 60.0, 60.0]])


def test_cross_scale_merge_soft_and_hard() -> None:
    scales, ranges = [1.0, 1.0], [[-1, -1], [-1, -1]]
    (soft,) = MultiScaleInference(FixedBoxModel(), scales, ranges)([_image(80, 80)])
    np.testing.assert_allclose(soft["scores"].numpy(), [0.9, 0.9 * math.exp(-1 / 0.55)], rtol=1e-6)
    (hard,) = MultiScaleInference(FixedBoxModel(), scales, ranges, merge="nms")([_image(80, 80)])
    assert hard["scores"].tolist() == pytest.approx([0.9])
    (top,) = MultiScaleInference(FixedBoxModel(), scales, ranges, top_k=1)([_image(80, 80)])
    assert len(top["scores"]) == 1


def test_batching_same_scale_and_pixel_budget() -> None:
    images = [_image(100, 150), _image(60, 90), _image(100, 150)]
    model = FixedBoxModel()
    outs = MultiScaleInference(model, [1.0, 0.5], [[-1, -1]] * 2)(images)
    assert [len(c) for c in model.calls] == [3, 3]  # one call per scale
    assert [o["pixels_per_scale"] for o in outs] == [[15000, 3750], [5400, 1350], [15000, 3750]]
    model = FixedBoxModel()
    # Budget of one padded 128 x 160 input: every 1.0-scale input runs alone.
    MultiScaleInference(model, [1.0], [[-1, -1]], max_pixels_per_batch=128 * 160)(images)
    assert [len(c) for c in model.calls] == [1, 1, 1]


def test_model_mode_restored_and_input_checks() -> None:
    model = FixedBoxModel().train()
    MultiScaleInference(model, [1.0], [[-1, -1]])([_image(40, 40)])
    assert model.training
    msi = MultiScaleInference(model, [1.0], [[-1, -1]])
    with pytest.raises(ValueError, match=r"image 1.*shape"):
        msi([_image(40, 40), np.zeros((40, 40), np.uint8)])
    with pytest.raises(ValueError, match="int64"):
        msi([np.zeros((40, 40, 3), np.int64)])
    with pytest.raises(ValueError, match="entries"):
        MultiScaleInference(model, [1.0, 2.0], [[-1, -1]])
    with pytest.raises(ValueError, match="tile_size"):
        MultiScaleInference(model, [1.0], [[-1, -1]], max_pixels=1000, tile_size=64)


def test_from_config_reads_test_keys() -> None:
    cfg = add_sniper_config(get_cfg())
    cfg.merge_from_list(
        [
            "SNIPER.TEST_SCALES",
            "[2.0, [512, 512]]",
            "SNIPER.TEST_VALID_RANGES",
            "[[-1, 64], [48, -1]]",
            "SNIPER.TEST_NMS",
            "nms",
            "SNIPER.DETECTIONS_PER_IMAGE",
            "7",
            "INPUT.FORMAT",
            "BGR",
        ]
    )
    msi = MultiScaleInference.from_config(cfg, FixedBoxModel(), tile_size=1024)
    assert msi.scales == [2.0, (512.0, 512.0)]
    np.testing.assert_array_equal(msi.valid_ranges, [[0, 64], [48, math.inf]])
    assert (msi.merge, msi.top_k, msi.input_format, msi.tile_size) == ("nms", 7, "BGR", 1024)
    assert msi.sigma == pytest.approx(0.55) and msi.device == torch.device("cpu")


def test_tile_boxes_cover_canvas() -> None:
    tiles = tile_boxes((300, 500), 128, 48)
    assert tiles[:, 0].min() == 0 and tiles[:, 2].max() == 500 and tiles[:, 3].max() == 300
    assert ((tiles[:, 2] - tiles[:, 0]) == 128).all() and ((tiles[:, 3] - tiles[:, 1]) == 128).all()
    assert sorted(set(tiles[:, 0].tolist())) == [0, 80, 160, 240, 320, 372]
    np.testing.assert_array_equal(tile_boxes((50, 60), 128, 48), [[0, 0, 60, 50]])


def _blob_image(seed: int, h: int, w: int, max_side: int) -> np.ndarray:
    """Non-overlapping coloured rectangles (sides 4..max_side) on black."""
    rng = np.random.default_rng(seed)
    image, taken = np.zeros((h, w, 3), np.uint8), np.zeros((h, w), bool)
    for _ in range(400):
        bw, bh = rng.integers(4, max_side + 1, 2)
        x, y = rng.integers(0, w - bw), rng.integers(0, h - bh)
        if taken[max(0, y - 3) : y + bh + 3, max(0, x - 3) : x + bw + 3].any():
            continue
        taken[y : y + bh, x : x + bw] = True
        colour = np.zeros(3)
        colour[rng.integers(0, 3)] = rng.integers(180, 256)
        image[y : y + bh, x : x + bw] = colour
    return image


@pytest.mark.parametrize("scale", [1.0, 0.75, 1.5])
def test_tiled_equals_untiled_for_objects_within_overlap(scale: float) -> None:
    image = _blob_image(0, 240, 320, max_side=24)
    common = {"scales": [scale], "valid_ranges": [[-1, -1]], "top_k": 0, "merge": "nms"}
    (whole,) = MultiScaleInference(BlobModel(), max_pixels=None, **common)([image])
    tiling = {"max_pixels": 96 * 96, "tile_size": 96, "tile_overlap": 48, "tile_margin": 2}
    (tiled,) = MultiScaleInference(BlobModel(), **tiling, **common)([image])
    assert tiled["inputs_per_scale"][0] > 4
    canvas = (round(240 * scale), round(320 * scale))
    assert whole["pixels"] == canvas[0] * canvas[1] < tiled["pixels"]
    assert len(whole["boxes"]) > 40

    def as_sorted(out):
        rows = torch.cat([out["boxes"], out["scores"][:, None], out["classes"][:, None]], 1)
        return rows[np.lexsort(rows.numpy().T[::-1])].numpy()

    # Tiles are windows of the canvas: crops of the same shrunken canvas for factors <= 1
    # (identical pixels), per-window bilinear resampling when enlarging, where OpenCV's
    # fixed-point interpolation may differ by one grey level: scores within 2e-3 (0.4 / 255
    # per level) and, should a pixel cross the threshold, boxes within one canvas pixel.
    tiled_rows, whole_rows = as_sorted(tiled), as_sorted(whole)
    box_atol = 1e-3 if scale <= 1 else 1.01 / scale
    np.testing.assert_allclose(tiled_rows[:, :4], whole_rows[:, :4], atol=box_atol)
    np.testing.assert_allclose(tiled_rows[:, 4], whole_rows[:, 4], atol=2e-3)
    np.testing.assert_array_equal(tiled_rows[:, 5], whole_rows[:, 5])
    # Without the tile-border rule, objects cut by tiles add partial detections.
    (cut,) = MultiScaleInference(BlobModel(), **{**tiling, "tile_margin": -1e9}, **common)([image])
    assert len(cut["boxes"]) > len(whole["boxes"])
