"""A fake detector with a mask head for the inference tests, and the check that every
surviving detection carries its own patch.

`MaskFakeDetector`: every 8-connected component of green > 127 in an input is one detection
(its bounding box in input px, exclusive right/bottom edge, label 1, or 2 when its red
channel is > 127 at its first pixel); its patch is the component's pixels in the box resized
to `M x M` (`cv2.INTER_AREA`, times 0.9) plus `uid * 1e-5`, a number unique to that detection
across all calls, so that a patch names its detection. Scores are drawn from
`default_rng(uid)` in [0.3, 0.95), so that different inputs and scales disagree. With
`focus=True` it also outputs a FocusPixel map (a 16 x 16 cell holding a red > 127 pixel: 1).
With `exact=True` the patch of an `M x M` px box is not resized nor offset: it is the
component's mask itself, so pasting it back at factor 1 is exact (identities are then not
unique).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sniper.inference.mask_patches import patch_to_rle
from sniper.structures import chip_to_image

STRIDE = 16


class MaskFakeDetector(nn.Module):
    """See module doc."""

    focus_stride = STRIDE

    def __init__(self, m: int = 28, focus: bool = False, exact: bool = False) -> None:
        super().__init__()
        self.m, self.focus, self.exact = int(m), bool(focus), bool(exact)
        self.uid = 0
        self.detections = 0

    def _detect(self, image: Tensor) -> dict[str, Tensor]:
        green = (image[1] > 127).to(torch.uint8).numpy()
        red = image[0].numpy() > 127
        count, comp, stats, _ = cv2.connectedComponentsWithStats(green, connectivity=8)
        boxes, scores, labels, patches = [], [], [], []
        for k in range(1, count):
            x, y, w, h, _ = stats[k].tolist()
            own = (comp[y : y + h, x : x + w] == k).astype(np.float32)
            if self.exact and own.shape == (self.m, self.m):
                patch = own.copy()
            else:
                patch = cv2.resize(own, (self.m, self.m), interpolation=cv2.INTER_AREA) * 0.9
            self.uid += 1
            exact = self.exact and own.shape == (self.m, self.m)
            patches.append(patch if exact else patch + np.float32(self.uid * 1e-5))
            boxes.append([x, y, x + w, y + h])
            scores.append(0.3 + 0.65 * np.random.default_rng(self.uid).random())
            first = np.argwhere(comp[y : y + h, x : x + w] == k)[0]
            labels.append(2 if red[y + first[0], x + first[1]] else 1)
        self.detections += len(boxes)
        out = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "scores": torch.tensor(scores, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "mask_patches": torch.from_numpy(
                np.asarray(patches, np.float32).reshape(-1, self.m, self.m)
            ),
        }
        if self.focus:
            hot = torch.from_numpy(red).float()[None, None]
            out["focus_prob"] = F.max_pool2d(hot, STRIDE, STRIDE, ceil_mode=True)[0, 0]
        return out

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return [self._detect(im.cpu()) for im in images]


def spy_on_detections(engine: Any) -> dict[bytes, tuple]:
    """Wrap ``engine.forward_inputs``; the returned table maps each patch the model gave
    (its bytes) to ``(NetworkInput, box input px, score, label)``."""
    table: dict[bytes, tuple] = {}
    forward = engine.forward_inputs

    def spy(sources, inputs):
        outs = forward(sources, inputs)
        for inp, out in zip(inputs, outs, strict=True):
            for j, patch in enumerate(out["mask_patches"]):
                row = (inp, out["boxes"][j].copy(), float(out["scores"][j]), int(out["labels"][j]))
                table[patch.tobytes()] = row
        return outs

    engine.forward_inputs = spy
    return table


def assert_own_patches(
    result: dict, table: dict[bytes, tuple], image_size: tuple[int, int], decayed: bool
) -> None:
    """Every detection of ``result`` holds the patch of the very detection its box, class
    and score come from, its frame is that detection's box mapped to image px (unclipped),
    its box is that frame clipped, and ``masks[i]`` is the patch pasted over the frame."""
    n = len(result["boxes"])
    assert result["mask_patches"].shape[0] == n == len(result["masks"])
    assert result["mask_patches"].dtype == np.float32 and result["mask_boxes"].dtype == np.float32
    height, width = image_size
    for i in range(n):
        inp, box_in, score, label = table[result["mask_patches"][i].tobytes()]
        frame = chip_to_image(box_in[None], inp.canvas_box, inp.factor)[0]
        assert np.asarray(result["mask_boxes"][i]).tolist() == frame.tolist()
        clipped = frame.copy()
        clipped[0::2] = clipped[0::2].clip(0, width)
        clipped[1::2] = clipped[1::2].clip(0, height)
        assert np.asarray(result["boxes"][i]).tolist() == clipped.tolist()
        assert int(result["classes"][i]) == label - 1
        got = float(result["scores"][i])
        assert got <= score + 1e-6 if decayed else abs(got - score) < 1e-6
        assert result["masks"][i] == patch_to_rle(result["mask_patches"][i], frame, image_size)
