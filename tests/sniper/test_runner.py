"""The shared inference runner: network-input records, the inner-edge cut, batching under a
pixel budget, the per-scale step (de-duplication, clipping, half-open range) and the joint
with both engines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sniper.inference.network_input import NetworkInput, whole_canvas
from sniper.inference.runner import InferenceRunner, batch_by_pixels, cut_by_inner_edges


def test_network_input_geometry() -> None:
    inp = NetworkInput(0, 2.0, (0, 100, 200, 300), (300, 500), cut_margin=20.0)
    assert inp.inner_edges == (False, True, True, False)
    assert inp.area == 200 * 200 and not inp.is_whole
    assert inp.window_img.tolist() == [0.0, 50.0, 100.0, 150.0]
    assert inp.offset == (0.0, 50.0)
    whole = whole_canvas(3, 0.5, (300, 500))
    assert whole.canvas_box == (0, 0, 500, 300) and whole.is_whole
    assert whole.inner_edges == (False, False, False, False)


def test_cut_by_inner_edges_only_cuts_at_inner_edges() -> None:
    # window (0, 100)-(200, 300) of a 500 x 300 canvas: top and right edges are inner
    inp = NetworkInput(0, 2.0, (0, 100, 200, 300), (300, 500), cut_margin=20.0)
    boxes = np.array(
        [
            [2, 20, 40, 60],  # 2 px from the left edge: a canvas edge, kept
            [60, 10, 100, 60],  # 10 px from the inner top edge: cut
            [60, 20, 100, 60],  # exactly the margin from the top: kept
            [60, 40, 190, 60],  # 10 px from the inner right edge: cut
            [60, 40, 180, 60],  # exactly the margin from the right: kept
            [60, 40, 100, 198],  # 2 px from the bottom: a canvas edge, kept
        ],
        np.float32,
    )
    assert cut_by_inner_edges(boxes, inp).tolist() == [False, True, False, True, False, False]
    zero = NetworkInput(0, 2.0, (0, 100, 200, 300), (300, 500), cut_margin=0.0)
    assert not cut_by_inner_edges(boxes, zero).any()
    # a whole canvas has no inner edge, whatever the margin
    assert not cut_by_inner_edges(boxes, whole_canvas(0, 1.0, (200, 200))).any()


def test_batch_by_pixels_pads_to_the_largest_member() -> None:
    inputs = [
        NetworkInput(k, 1.0, (0, 0, w, h), (1000, 1000))
        for k, (w, h) in enumerate([(64, 64), (64, 64), (100, 64), (32, 32), (600, 600)])
    ]
    # padded: 64x64, 64x64, 128x64 -> 3 * 64 * 128 = 24576 fits 24576, a 4th would not
    groups = [[i.image_index for i in b] for b in batch_by_pixels(inputs, 3 * 64 * 128)]
    assert groups == [[0, 1, 2], [3], [4]]
    assert [len(b) for b in batch_by_pixels(inputs, 10**9)] == [5]


def test_scale_detections_dedups_clips_and_keeps_half_open_range() -> None:
    a = (
        np.array([[0, 0, 10, 10], [-5, 0, 15, 10]], np.float32),
        np.array([0.9, 0.8], np.float32),
        np.array([1, 1]),
    )
    b = (
        np.array([[0, 0, 10, 10.5], [50, 50, 70, 70]], np.float32),
        np.array([0.7, 0.6], np.float32),
        np.array([1, 2]),
    )
    boxes, scores, labels = InferenceRunner.scale_detections([a, b], (60, 60), (0.0, 10.5))
    # no dedup; clipped to 60 x 60: sizes 10, 12.2 (15 x 10 after clipping: out), 10.25 and
    # 10 (clipped to 50..60)
    assert boxes.tolist() == [[0, 0, 10, 10], [0, 0, 10, 10.5], [50, 50, 60, 60]]
    # half-open: a size equal to hi is out
    boxes, _, _ = InferenceRunner.scale_detections([a], (60, 60), (0.0, 10.0))
    assert boxes.tolist() == []
    boxes, _, _ = InferenceRunner.scale_detections([a], (60, 60), (10.0, 11.0))
    assert boxes.tolist() == [[0, 0, 10, 10]]  # the clipped one is 15 x 10: size 12.2
    # with de-duplication across the two inputs, the 0.7 twin of the 0.9 box goes
    boxes, scores, labels = InferenceRunner.scale_detections(
        [a, b], (60, 60), (0.0, 100.0), dedup_iou=0.5
    )
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.6])
    assert labels.tolist() == [1, 1, 2]


class _Recorder(torch.nn.Module):
    """One fixed detection per input, at the input's centre, 8 x 8 input px; class 1."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.shapes: list[tuple[int, int]] = []

    def forward(self, images):
        outs = []
        for im in images:
            h, w = im.shape[1:]
            self.shapes.append((h, w))
            cx, cy = w / 2, h / 2
            outs.append(
                {
                    "boxes": torch.tensor([[cx - 4, cy - 4, cx + 4, cy + 4]]),
                    "scores": torch.tensor([0.9]),
                    "labels": torch.tensor([1]),
                }
            )
        return outs


def test_run_maps_back_filters_and_counts_pixels() -> None:
    model = _Recorder()
    runner = InferenceRunner(model, merge="nms", top_k=10)
    image = np.zeros((100, 200, 3), np.uint8)

    def choose(s, sizes, previous):
        assert sizes == [(100, 200)]
        if s == 0:
            assert previous is None
            return [whole_canvas(0, 0.5, (50, 100))]
        assert previous.inputs[0].factor == 0.5 and previous.outputs[0]["boxes"].shape == (1, 4)
        return [NetworkInput(0, 2.0, (40, 20, 120, 100), (200, 400))]

    (out,) = runner.run([image], [(0.0, 100.0), (0.0, 100.0)], choose)
    assert model.shapes == [(50, 100), (80, 80)]
    # scale 0: centre (50, 25) canvas -> box [46, 21, 54, 29] / 0.5 = [92, 42, 108, 58]
    # scale 1: centre (40, 40) input + (40, 20) -> [76, 56, 84, 64] / 2 = [38, 28, 42, 32]
    assert sorted(out["boxes"].tolist()) == [[38, 28, 42, 32], [92, 42, 108, 58]]
    assert out["classes"].tolist() == [0, 0]
    assert out["pixels_per_scale"] == [50 * 100, 80 * 80] and out["pixels"] == 11400
    assert out["inputs_per_scale"] == [1, 1]
    # the range of scale 0 excludes its 16 px box (size 16 is not < 16)
    (out,) = runner.run([image], [(0.0, 16.0), (0.0, 100.0)], choose)
    assert out["boxes"].tolist() == [[38, 28, 42, 32]]


def test_run_rejects_bad_images_naming_them() -> None:
    runner = InferenceRunner(_Recorder())
    with pytest.raises(ValueError, match="image 1: expected dtype"):
        runner.run(
            [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.float32)],
            [(0, 1)],
            lambda s, sizes, prev: [],
        )
    with pytest.raises(ValueError, match=r"image 0: expected shape \(H, W, 3\)"):
        runner.run([np.zeros((4, 4), np.uint8)], [(0, 1)], lambda s, sizes, prev: [])
    with pytest.raises(ValueError, match="merge"):
        InferenceRunner(_Recorder(), merge="wbf")


def test_missing_output_key_names_it() -> None:
    class NeedsFocus(InferenceRunner):
        output_keys = {"focus_prob": "needs a FocusPixel head"}

    runner = NeedsFocus(_Recorder())
    with pytest.raises(KeyError, match="focus_prob.*FocusPixel head"):
        runner.run(
            [np.zeros((8, 8, 3), np.uint8)],
            [(0, 1)],
            lambda s, sizes, prev: [whole_canvas(0, 1.0, sizes[0])],
        )


def test_tile_input_tiles_the_window_and_keeps_its_edge_rules() -> None:
    from sniper.inference.tiling import default_tile_size, tile_input

    # a 300 x 200 window at canvas (100, 50) of a 1000 x 400 canvas, inner on all sides but
    # the bottom (y2 = 250 < 400 is inner too): cut margin 10 there
    chip = NetworkInput(0, 2.0, (100, 50, 400, 250), (400, 1000), cut_margin=10.0)
    assert tile_input(chip, 300 * 200, 128, 32, 3.0) == [chip]  # within the budget
    assert tile_input(chip, 0, 128, 32, 3.0) == [chip]  # 0 = never tile
    tiles = tile_input(chip, 128 * 128, 128, 32, 3.0)
    # starts every 96 px from the window's corner, the last flush with its far edges
    assert [t.canvas_box for t in tiles] == [
        (100 + x, 50 + y, 100 + x + 128, 50 + y + 128) for y in (0, 72) for x in (0, 96, 172)
    ]
    assert all(t.is_tile and t.parent_box == chip.canvas_box for t in tiles)
    assert all((t.factor, t.canvas_size, t.image_index) == (2.0, (400, 1000), 0) for t in tiles)
    # edges inside the window: the tile margin; edges on the window's (inner) edges: its own
    assert tiles[0].edge_margins == (10.0, 10.0, 3.0, 3.0)
    assert tiles[4].edge_margins == (3.0, 3.0, 3.0, 10.0)
    assert tiles[5].edge_margins == (3.0, 3.0, 10.0, 10.0)
    # a whole canvas has no inner edge: its tiles cut only where they meet each other
    whole = whole_canvas(0, 1.0, (200, 300))
    (first, *_rest, last) = tile_input(whole, 128 * 128, 128, 32, 3.0)
    assert first.edge_margins == (0.0, 0.0, 3.0, 3.0)
    assert last.edge_margins == (3.0, 3.0, 0.0, 0.0)
    boxes = np.array([[120, 10, 126, 20], [10, 10, 20, 20], [10, 124, 20, 127]], np.float32)
    assert cut_by_inner_edges(boxes, first).tolist() == [True, False, True]
    assert default_tile_size(8_000_000) == 2048 and default_tile_size(100_000) == 288
    assert default_tile_size(10) == 32


def test_runner_tiles_inputs_above_max_pixels_and_dedups_only_tiled_images() -> None:
    model = _Recorder()
    runner = InferenceRunner(
        model, merge="nms", top_k=0, max_pixels=64 * 64, tile_size=64, tile_overlap=16
    )
    assert (runner.tile_size, runner.tile_overlap, runner.tile_nms_iou) == (64, 16, 0.5)
    images = [np.zeros((100, 100, 3), np.uint8), np.zeros((60, 60, 3), np.uint8)]

    def choose(s, sizes, previous):
        return [whole_canvas(0, 1.0, (100, 100)), whole_canvas(1, 1.0, (60, 60))]

    seen = []
    out = runner.run(images, [(0.0, 1e9)], choose, on_scale=lambda s, outs: seen.append(outs))
    # image 0 (10,000 px) runs as 2 x 2 tiles of 64 px (starts 0 and 36), image 1 whole
    assert model.shapes == [(64, 64)] * 4 + [(60, 60)]
    assert [i.canvas_box for i in seen[0].inputs[:4]] == [
        (0, 0, 64, 64),
        (36, 0, 100, 64),
        (0, 36, 64, 100),
        (36, 36, 100, 100),
    ]
    assert out[0]["inputs_per_scale"] == [4] and out[1]["inputs_per_scale"] == [1]
    assert out[0]["pixels"] == 4 * 64 * 64 and out[1]["pixels"] == 60 * 60
    # one 8 x 8 detection at each tile's centre (no overlap between them): all kept
    assert sorted(out[0]["boxes"].tolist()) == [
        [28.0, 28.0, 36.0, 36.0],
        [28.0, 64.0, 36.0, 72.0],
        [64.0, 28.0, 72.0, 36.0],
        [64.0, 64.0, 72.0, 72.0],
    ]
    with pytest.raises(ValueError, match="max_pixels"):
        InferenceRunner(model, max_pixels=-1)
    with pytest.raises(ValueError, match="tile_size"):
        InferenceRunner(model, max_pixels=1000, tile_size=64)
    with pytest.raises(ValueError, match="tile_overlap"):
        InferenceRunner(model, tile_size=64, tile_overlap=64)


def test_untiled_inputs_of_an_image_are_not_deduplicated() -> None:
    # two inputs that are not tiles (e.g. FocusChips) giving the same detection: both reach
    # the soft-NMS merge (the second decayed), none is removed by the tile de-duplication
    runner = InferenceRunner(_Recorder(), merge="soft", top_k=0, min_score=0.0)
    window = NetworkInput(0, 1.0, (0, 0, 40, 40), (80, 80))

    def choose(s, sizes, previous):
        return [window, window]

    (out,) = runner.run([np.zeros((80, 80, 3), np.uint8)], [(0.0, 1e9)], choose)
    assert out["boxes"].tolist() == [[16.0, 16.0, 24.0, 24.0]] * 2
    assert out["scores"].tolist() == pytest.approx([0.9, 0.9 * np.exp(-1 / 0.55)])


class _BrightBox(torch.nn.Module):
    """One detection per input: the bounding box of its pixels brighter than 127 (class 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        outs = []
        for im in images:
            ys, xs = torch.nonzero(im[0] > 127, as_tuple=True)
            box = [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]] if len(xs) else []
            outs.append(
                {
                    "boxes": torch.tensor(box, dtype=torch.float32).reshape(-1, 4),
                    "scores": torch.full((len(box),), 0.9),
                    "labels": torch.ones(len(box), dtype=torch.int64),
                }
            )
        return outs


def test_tiles_seeing_the_same_object_are_deduplicated() -> None:
    # a 16 px square lies whole in all 4 tiles (starts 0 and 36, margin 4): one detection
    # survives the tile de-duplication; the soft-NMS merge alone would keep 4 (decayed)
    image = np.zeros((100, 100, 3), np.uint8)
    image[40:56, 40:56] = 255
    runner = InferenceRunner(
        _BrightBox(),
        merge="soft",
        top_k=0,
        min_score=0.0,
        max_pixels=64 * 64,
        tile_size=64,
        tile_overlap=28,
        tile_margin=4,
    )
    (out,) = runner.run(
        [image], [(0.0, 1e9)], lambda s, sizes, prev: [whole_canvas(0, 1.0, (100, 100))]
    )
    assert out["inputs_per_scale"] == [4]
    assert out["boxes"].tolist() == [[40.0, 40.0, 56.0, 56.0]]
    assert out["scores"].tolist() == pytest.approx([0.9])


def test_tiling_defaults_follow_the_batch_budget() -> None:
    default = InferenceRunner(_Recorder())
    assert (default.max_pixels, default.tile_size, default.tile_overlap) == (8_000_000, 2048, 512)
    small = InferenceRunner(_Recorder(), max_pixels_per_batch=100_000)
    assert (small.max_pixels, small.tile_size, small.tile_overlap) == (100_000, 288, 72)
    assert InferenceRunner(_Recorder(), max_pixels=0).max_pixels == 0  # never tile
