"""AutoFocus pictures: heat map sampling, chips in their scale colours, the CLI writes PNGs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from autofocus.cascade import FocusMap
from autofocus.visualization import draw_autofocus, draw_heatmap, focus_heatmap
from autofocus.visualize_cli import main, parse_args
from sniper.visualization import scale_color
from sniper.visualization_dets import class_color


def test_heatmap_samples_each_pixel_centre() -> None:
    prob = np.array([[0.0, 1.0], [0.5, 0.0]], np.float32)
    heat = focus_heatmap([FocusMap(prob, 0.5, (0.0, 0.0), 16.0)], (64, 64))
    expected = np.zeros((64, 64), np.float32)
    expected[:32, 32:], expected[32:, :32] = 1.0, 0.5
    assert np.array_equal(heat, expected)
    shifted = focus_heatmap([FocusMap(prob, 1.0, (10.0, 4.0), 16.0)], (64, 64))
    assert shifted[4, 26] == 1.0 and shifted[4, 25] == 0.0 and shifted[3, 30] == 0.0
    assert shifted[20, 10] == 0.5 and shifted[36, 10] == 0.0


def test_heatmap_blend_uses_the_jet_colours() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[1, 2] = 1.0
    out = draw_heatmap(image, heat, alpha=1.0)
    jet = cv2.cvtColor(
        cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB
    )
    assert out[1, 2].tolist() == jet[0, 1].tolist() and out[0, 0].tolist() == jet[0, 0].tolist()
    assert np.array_equal(draw_heatmap(image, heat, alpha=0.0), image)


def _result() -> dict:
    prob = np.zeros((16, 16), np.float32)
    prob[12, 12] = 1.0
    return {
        "focus_maps": [[FocusMap(prob, 1.0, (0.0, 0.0), 16.0)], [], []],
        "chips_per_scale": [
            np.array([[0, 0, 256, 256]], np.float32),
            np.array([[40, 120, 120, 200]], np.float32),
            np.array([[150, 150, 230, 230]], np.float32),
        ],
        "pixels_per_scale": [65536, 6400, 25600],
        "full_pixels_per_scale": [65536, 65536, 262144],
        "boxes": torch.tensor([[180.0, 100.0, 240.0, 130.0]]),
        "scores": torch.tensor([0.9]),
        "classes": torch.tensor([3]),
    }


def test_chips_are_drawn_in_their_scale_colours() -> None:
    image = np.zeros((256, 256, 3), np.uint8)
    out = draw_autofocus(image, _result(), score_thresh=0.5, alpha=0.0)
    assert out[160, 40].tolist() == list(scale_color(1))  # left edge of the scale-1 chip
    assert out[190, 229].tolist() == list(scale_color(2))  # right edge of the scale-2 chip
    assert out[115, 180].tolist() == list(class_color(3))  # left edge of the detection
    assert out[160, 80].tolist() == [0, 0, 0]  # inside a chip: untouched
    assert image.max() == 0  # the input is not modified


def test_heat_map_is_drawn_under_the_chips() -> None:
    image = np.zeros((256, 256, 3), np.uint8)
    out = draw_autofocus(image, _result(), alpha=0.5)
    hot, cold = out[200, 200], out[100, 20]
    assert hot.tolist() != cold.tolist()
    assert out[160, 40].tolist() == list(scale_color(1))


def test_cli_writes_one_png_per_image(tmp_path) -> None:
    path = tmp_path / "img.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    argv = [
        "--config-file",
        "",
        "MODEL.META_ARCHITECTURE",
        "AutoFocusRCNN",
        "--input",
        str(path),
        "--output",
        str(tmp_path / "out"),
        "MODEL.BACKBONE.NAME",
        "mobilenet_v2_fpn",
        "MODEL.FPN.OUT_CHANNELS",
        "16",
        "MODEL.ROI_BOX_HEAD.FC_DIM",
        "32",
        "MODEL.NUM_CLASSES",
        "3",
        "AUTOFOCUS.HEAD_CHANNELS",
        "8",
        "AUTOFOCUS.SCALES",
        "[[64, 64], 1.0]",
        "AUTOFOCUS.VALID_RANGES",
        "[[40, -1], [-1, 40]]",
        "AUTOFOCUS.THRESHOLDS",
        "[0.0]",
        "AUTOFOCUS.DILATIONS",
        "[1]",
        "AUTOFOCUS.MIN_SIZES",
        "[2]",
    ]
    assert main(argv) == 0
    written = cv2.imread(str(tmp_path / "out" / "img_autofocus.png"))
    assert written is not None and written.shape == (96, 128, 3)


def test_cli_rejects_unknown_flags_and_odd_overrides() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--input", "x", "--bogus", "1"])
    with pytest.raises(SystemExit):
        parse_args(["--input", "x", "MODEL.WEIGHTS"])
    args = parse_args(["MODEL.WEIGHTS", "w.pth", "--input", "a", "--input", "b", "--", "K", "V"])
    assert args.input == ["a", "b"] and args.opts == ["MODEL.WEIGHTS", "w.pth", "K", "V"]
