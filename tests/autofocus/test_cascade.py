"""The AutoFocus cascade with a fake model (conftest): exact chips, early stop, border
pruning, per-scale ranges and pixel accounting, all recomputed by hand.

Images are 1024 x 1024; scales long side 512, 1.0, 2.0 give factors 0.5, 1, 2 and canvases
512, 1024, 2048 px. Painted blocks sit on even image px so that the 0.5x INTER_AREA shrink
and the 2x bilinear warp reproduce them exactly (thresholded at 127).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autofocus.cascade import AutoFocusCascade
from autofocus.params import CascadeParams

SIZE = 1024
FULL = 512 * 512 + 1024 * 1024 + 2048 * 2048
RED_BLOCK = (384, 256, 448, 320)  # image px -> cells x 12..13, y 8..9 at 0.5x
CHIP1 = [352.0, 224.0, 480.0, 352.0]  # 2x2 hot cells grown to 4x4 ([11, 7, 15, 11]) * 32 px
CHIP2 = [384.0, 256.0, 448.0, 320.0]  # 4x4 hot cells of the 128x128 scale-1 input, * 16 px


def _params(**kw) -> CascadeParams:
    args = dict(
        scales=([512, 512], 1.0, 2.0),
        valid_ranges=([75, -1], [32, 180], [-1, 75]),
        thresholds=(0.5, 0.5),
        dilations=(1, 1),
        min_sizes=(4, 4),
        border_delta=10.0,
    )
    args.update(kw)
    return CascadeParams(**args)


def _image(red=(), green=()) -> np.ndarray:
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    for channel, boxes in ((0, red), (1, green)):
        for x1, y1, x2, y2 in boxes:
            image[y1:y2, x1:x2, channel] = 255
    return image


def _cascade(model, **kw) -> AutoFocusCascade:
    return AutoFocusCascade(model, _params(), merge="soft", top_k=100, **kw)


def test_chips_are_built_where_the_map_is_hot(fake_model) -> None:
    model = fake_model()
    out = _cascade(model)([_image(red=[RED_BLOCK])])[0]
    chips = out["chips_per_scale"]
    assert chips[0].tolist() == [[0.0, 0.0, 1024.0, 1024.0]]
    assert chips[1].tolist() == [CHIP1]
    assert chips[2].tolist() == [CHIP2]
    assert model.calls == [[(512, 512)], [(128, 128)], [(128, 128)]]
    maps = out["focus_maps"]
    assert maps[0][0].prob.shape == (32, 32) and maps[0][0].factor == 0.5
    assert np.argwhere(maps[0][0].prob > 0).tolist() == [[8, 12], [8, 13], [9, 12], [9, 13]]
    assert maps[1][0].offset == (352.0, 224.0) and maps[1][0].prob.shape == (8, 8)
    assert maps[2][0].offset == (384.0, 256.0) and maps[2][0].factor == 2.0


def test_pixels_are_counted_per_scale(fake_model) -> None:
    out = _cascade(fake_model())([_image(red=[RED_BLOCK])])[0]
    assert out["pixels_per_scale"] == [512 * 512, 128 * 128, 128 * 128]
    assert out["full_pixels_per_scale"] == [512 * 512, 1024 * 1024, 2048 * 2048]
    assert out["pixels"] == 512 * 512 + 2 * 128 * 128
    assert out["pixel_fraction"] == pytest.approx((512 * 512 + 2 * 128 * 128) / FULL)


def test_cold_map_stops_after_the_coarse_scale(fake_model) -> None:
    model = fake_model()
    hot, cold = _image(red=[RED_BLOCK]), _image(green=[(600, 600, 700, 700)])
    out_hot, out_cold = _cascade(model)([hot, cold])
    assert model.calls == [[(512, 512), (512, 512)], [(128, 128)], [(128, 128)]]
    assert out_cold["pixels_per_scale"] == [512 * 512, 0, 0]
    assert out_cold["pixel_fraction"] == pytest.approx(512 * 512 / FULL)
    assert [len(c) for c in out_cold["chips_per_scale"]] == [1, 0, 0]
    assert out_cold["boxes"].tolist() == [[600.0, 600.0, 700.0, 700.0]]
    assert out_hot["pixels_per_scale"] == [512 * 512, 128 * 128, 128 * 128]


def test_threshold_override_per_call(fake_model) -> None:
    model = fake_model(hot=0.6)
    cascade = _cascade(model)
    image = _image(red=[RED_BLOCK])
    assert cascade([image])[0]["pixels_per_scale"] == [512 * 512, 128 * 128, 128 * 128]
    cold = cascade([image], thresholds=(0.7, 0.5))[0]
    assert cold["pixels_per_scale"] == [512 * 512, 0, 0]
    second = cascade([image], params=_params(thresholds=(0.5, 0.7)))[0]
    assert second["pixels_per_scale"] == [512 * 512, 128 * 128, 0]
    bigger = cascade([image], min_sizes=(6, 4))[0]  # 6x6 cells at 0.5x = 192 px
    assert bigger["chips_per_scale"][1].tolist() == [[320.0, 192.0, 512.0, 384.0]]


BIG = (600, 600, 700, 700)  # size 100: kept at scale 0 only (range [75, inf))
MID = (376, 248, 416, 288)  # size 40: in CHIP1 (>= 24 px from its edges), kept at scale 1
TINY = (420, 290, 436, 306)  # size 16: in CHIP2 (>= 12 px from its edges), kept at scale 2


def test_each_scale_keeps_its_range_and_inner_edges_cut(fake_model) -> None:
    image = _image(red=[RED_BLOCK], green=[BIG, MID, TINY])
    out = _cascade(fake_model())([image])[0]
    # MID is seen at scale 2 clipped by CHIP2 to [384, 256, 416, 288] (size 32, in range
    # [0, 75)) touching CHIP2's inner left and top edges: pruned.
    assert sorted(out["boxes"].tolist()) == sorted([list(map(float, b)) for b in (BIG, MID, TINY)])
    assert torch.allclose(out["scores"], torch.full((3,), 0.9))
    assert out["classes"].tolist() == [0, 0, 0]


def test_without_border_pruning_the_cut_object_survives(fake_model) -> None:
    image = _image(red=[RED_BLOCK], green=[BIG, MID, TINY])
    out = _cascade(fake_model())([image], border_delta=0.0)[0]
    boxes = out["boxes"].tolist()
    assert len(boxes) == 4 and [384.0, 256.0, 416.0, 288.0] in boxes
    cut = boxes.index([384.0, 256.0, 416.0, 288.0])
    iou = (32 * 32) / (40 * 40)  # soft-NMS decay by the MID detection
    assert float(out["scores"][cut]) == pytest.approx(0.9 * np.exp(-(iou**2) / 0.55), rel=1e-5)


def test_no_pruning_at_image_edges(fake_model) -> None:
    # A hot block at the top-left corner: the chips touch the image edges there, so an
    # object 2 px from the image corner is kept at every scale's range.
    image = _image(red=[(0, 0, 64, 64)], green=[(2, 2, 18, 18)])
    out = _cascade(fake_model())([image])[0]
    assert out["chips_per_scale"][1].tolist() == [[0.0, 0.0, 128.0, 128.0]]
    assert out["boxes"].tolist() == [[2.0, 2.0, 18.0, 18.0]]


def test_model_without_focus_prob_is_named() -> None:
    class NoFocus(torch.nn.Module):
        def forward(self, images):
            return [
                {
                    "boxes": torch.zeros(0, 4),
                    "scores": torch.zeros(0),
                    "labels": torch.zeros(0, dtype=torch.int64),
                }
                for _ in images
            ]

    with pytest.raises(KeyError, match="focus_prob"):
        AutoFocusCascade(NoFocus().eval(), _params())([_image()])


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="thresholds needs 2 entries"):
        _params(thresholds=(0.1,))
    with pytest.raises(ValueError, match="valid_ranges"):
        _params(valid_ranges=([0, 10],))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        _params(thresholds=(0.1, 1.5))
    assert _params().valid_ranges == ((75.0, float("inf")), (32.0, 180.0), (0.0, 75.0))
    assert _params().with_threshold(0.3).thresholds == (0.3, 0.3)


def test_border_delta_is_in_image_px_at_every_scale(fake_model) -> None:
    # At scale 2 (factor 2) CHIP2's inner left edge is at image x 384. An object 6 image px
    # (12 input px) from it is cut with delta 10 image px (20 input px); it is out of the
    # ranges of scales 0 and 1, so it must not appear at all.
    near_edge = (390, 290, 406, 306)
    out = _cascade(fake_model())([_image(red=[RED_BLOCK], green=[near_edge])])[0]
    assert out["chips_per_scale"][2].tolist() == [CHIP2]
    assert out["boxes"].tolist() == []
    out = _cascade(fake_model())([_image(red=[RED_BLOCK], green=[near_edge])], border_delta=5.0)[0]
    assert out["boxes"].tolist() == [list(map(float, near_edge))]


def test_focus_chips_outside_the_image_are_dropped(fake_model) -> None:
    # A model whose coarse map has 8 extra hot columns beyond the input: their FocusChip lies
    # beyond the image's right edge, is empty once clipped, and is never processed.
    class WideMap(fake_model().__class__):
        def _detect(self, image):
            out = super()._detect(image)
            prob = out["focus_prob"]
            out["focus_prob"] = torch.cat([prob, torch.ones(prob.shape[0], 8)], dim=1)
            return out

    model = WideMap()
    out = _cascade(model)([_image()])[0]
    assert [c.tolist() for c in out["chips_per_scale"]] == [[[0.0, 0.0, 1024.0, 1024.0]], [], []]
    assert model.calls == [[(512, 512)]]


HOT_AREA = (256, 256, 768, 768)  # image px: one 512 x 512 FocusChip region at every scale
SMALL_OBJECTS = [  # image px, sizes 16 and 20: whole in some tile at 1.0x and 2.0x
    (300, 300, 316, 316),
    (430, 440, 450, 460),  # straddles tile edges at 1.0x and at 2.0x
    (500, 610, 516, 626),
    (700, 300, 720, 320),
]


def test_big_focus_chips_are_tiled_under_the_pixel_budget(fake_model) -> None:
    """A FocusChip above max_pixels runs as tiles (the runner's tiling, the same rule as
    multi-scale inference): no model input exceeds the budget, and the detections of objects
    smaller than the tile overlap are those of the untiled cascade."""
    image = _image(red=[HOT_AREA], green=SMALL_OBJECTS)
    tiling = {"max_pixels": 256 * 256, "tile_size": 256, "tile_overlap": 64, "tile_margin": 2}
    untiled_model, tiled_model = fake_model(), fake_model()
    whole = _cascade(untiled_model, max_pixels=0)([image])[0]
    tiled = _cascade(tiled_model, max_pixels_per_batch=256 * 256, **tiling)([image])[0]
    # untiled: the chip is one input per scale (520 x 520 image px after growth)
    assert [len(c) for c in whole["chips_per_scale"]] == [1, 1, 1]
    assert max(h * w for call in untiled_model.calls for h, w in call) > 256 * 256
    # tiled: every input within the budget, several tiles at every scale (the 512 x 512
    # coarse canvas too)
    assert max(h * w for call in tiled_model.calls for h, w in call) <= 256 * 256
    assert min(tiled["inputs_per_scale"]) >= 4
    # the union of the tiles is the untiled chip at each scale
    for s in (1, 2):
        (chip,) = whole["chips_per_scale"][s]
        tiles = tiled["chips_per_scale"][s]
        assert tiles[:, :2].min(0).tolist() == chip[:2].tolist()
        assert tiles[:, 2:].max(0).tolist() == chip[2:].tolist()

    def rows(out):
        r = torch.cat([out["boxes"], out["scores"][:, None], out["classes"][:, None]], 1)
        return sorted(r.tolist())

    np.testing.assert_allclose(rows(tiled), rows(whole), atol=1e-6)
    assert sorted(tiled["boxes"].tolist()) == sorted([list(map(float, b)) for b in SMALL_OBJECTS])
