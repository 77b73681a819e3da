"""Fixtures of the AutoFocus tests: a fake detector whose outputs follow from the input pixels.

`fake_model(hot=1.0)` builds a `FakeFocusModel`: channel 0 (red) marks where FocusPixels are
(a 16 x 16 cell holding a pixel with red > 127 has probability `hot`, every other cell 0);
channel 1 (green) marks objects (every 8-connected component of green > 127 is one
detection: its bounding box in input px, exclusive right/bottom edge, score 0.9, label 1).
`model.calls` records, per model call, the list of input `(h, w)`.

Every test runs with one torch thread (autouse fixture), restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

STRIDE = 16


class FakeFocusModel(nn.Module):
    """See module doc."""

    focus_stride = STRIDE

    def __init__(self, hot: float = 1.0) -> None:
        super().__init__()
        self.hot = float(hot)
        self.calls: list[list[tuple[int, int]]] = []

    def _detect(self, image: Tensor) -> dict[str, Tensor]:
        green = (image[1] > 127).to(torch.uint8).numpy()
        count, _, stats, _ = cv2.connectedComponentsWithStats(green, connectivity=8)
        boxes = [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:count].tolist()]
        red = (image[0] > 127).float()[None, None]
        prob = F.max_pool2d(red, STRIDE, STRIDE, ceil_mode=True)[0, 0] * self.hot
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.full((len(boxes),), 0.9),
            "labels": torch.ones(len(boxes), dtype=torch.int64),
            "focus_prob": prob,
        }

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        assert not self.training
        self.calls.append([(int(im.shape[1]), int(im.shape[2])) for im in images])
        return [self._detect(im.cpu()) for im in images]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run every AutoFocus test on one torch thread (the CI machine's cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def fake_model() -> Callable[..., FakeFocusModel]:
    """Factory of `FakeFocusModel` (module doc)."""
    return FakeFocusModel
