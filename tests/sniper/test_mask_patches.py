"""mask_patches: pasting a patch over its box (against a per-pixel reference loop), RLE
written from the window alone (against pycocotools.mask.encode of the full mask), edge
cases and bad input."""

from __future__ import annotations

import math

import numpy as np
import pycocotools.mask as mask_util
import pytest

from sniper.inference.mask_patches import paste_patch, patch_to_rle, patches_to_rle


def _reference_full(patch, box, size, threshold=0.5) -> np.ndarray:
    """The pasting rule written pixel by pixel on a full (H, W) image."""
    height, width = size
    m = patch.shape[0]
    x1, y1, x2, y2 = (float(v) for v in box)
    out = np.zeros((height, width), np.uint8)

    def coord(p, lo, hi):
        t = (p - lo) * m / (hi - lo) - 0.5
        t = min(max(t, 0.0), m - 1)
        c0 = math.floor(t)
        return c0, min(c0 + 1, m - 1), t - c0

    for v in range(height):
        for u in range(width):
            cx, cy = u + 0.5, v + 0.5
            if not (x1 <= cx < x2 and y1 <= cy < y2):
                continue
            c0, c1, ax = coord(cx, x1, x2)
            r0, r1, ay = coord(cy, y1, y2)
            val = (1 - ay) * ((1 - ax) * patch[r0, c0] + ax * patch[r0, c1]) + ay * (
                (1 - ax) * patch[r1, c0] + ax * patch[r1, c1]
            )
            out[v, u] = val >= threshold
    return out


def _full_from_local(local, origin, size) -> np.ndarray:
    full = np.zeros(size, np.uint8)
    x0, y0 = origin
    full[y0 : y0 + local.shape[0], x0 : x0 + local.shape[1]] = local
    return full


CASES = [
    # (box, image size): inside, partly outside on every side, whole image and more,
    # fractional edges, one column at the image edge (runs join across columns)
    ((3.2, 4.7, 17.9, 12.1), (20, 24)),
    ((-5.5, -3.0, 9.3, 8.8), (16, 16)),
    ((10.0, 8.0, 30.0, 25.0), (20, 18)),
    ((-2.0, -2.0, 40.0, 40.0), (13, 11)),
    ((0.0, 0.0, 1.0, 20.0), (20, 5)),
    ((0.4, 0.0, 7.6, 9.0), (9, 9)),
    ((1.0, -1.0, 3.0, 30.0), (20, 5)),  # two whole-height columns: their runs join
]


@pytest.mark.parametrize("box,size", CASES)
@pytest.mark.parametrize("m", [1, 3, 28])
def test_paste_and_rle_match_the_reference(box, size, m) -> None:
    rng = np.random.default_rng(m)
    patch = rng.random((m, m)).astype(np.float32)
    ref = _reference_full(patch.astype(np.float64), box, size)
    local, origin = paste_patch(patch, box, size)
    np.testing.assert_array_equal(_full_from_local(local, origin, size), ref)
    rle = patch_to_rle(patch, box, size)
    expected = mask_util.encode(np.asfortranarray(ref))
    assert rle == {"size": list(size), "counts": expected["counts"].decode("ascii")}
    np.testing.assert_array_equal(mask_util.decode(rle), ref)


def test_constant_patch_fills_the_pixels_whose_centre_is_in_the_box() -> None:
    patch = np.full((28, 28), 0.75, np.float32)
    local, origin = paste_patch(patch, (2.5, 1.4, 6.5, 3.6), (10, 10))
    # x centres 2.5 .. 5.5 -> u 2..5; y centres 1.5, 2.5 -> v 1, 2 (3.5 < 3.6 too: v 3)
    assert origin == (2, 1) and local.shape == (3, 4) and local.all()
    local, _ = paste_patch(patch, (2.5, 1.4, 6.5, 3.6), (10, 10), threshold=0.76)
    assert not local.any()


def test_threshold_splits_a_step_patch_exactly() -> None:
    # left half 0.25, right half 0.75 over a 8 x 8 box at the origin: 4 px per half
    patch = np.zeros((2, 2), np.float32)
    patch[:, 0], patch[:, 1] = 0.25, 0.75
    # bilinear between the cell centres x = 2 and x = 6: value 0.25 + 0.5 * (x - 2) / 4
    local, _ = paste_patch(patch, (0, 0, 8, 8), (8, 8), threshold=0.5)
    assert local[0].tolist() == [False] * 4 + [True] * 4  # 0.5 at x = 4.0 exactly: not a centre
    local, _ = paste_patch(patch, (0, 0, 8, 8), (8, 8), threshold=0.25)
    assert local.all()
    local, _ = paste_patch(patch, (0, 0, 8, 8), (8, 8), threshold=0.7)
    assert local[0].tolist() == [False] * 6 + [True] * 2  # 0.6875 at 5.5, 0.75 from 6


@pytest.mark.parametrize(
    "box",
    [
        (3.6, 3.6, 4.4, 4.4),
        (3.0, 3.0, 3.5, 9.0),
        (5.0, 5.0, 5.0, 8.0),
        (7.0, 2.0, 3.0, 6.0),
        (20.0, 20.0, 30.0, 30.0),
        (-9.0, 0.0, -1.0, 5.0),
    ],
)
def test_boxes_without_a_pixel_centre_paste_nothing(box) -> None:
    patch = np.ones((28, 28), np.float32)
    local, _ = paste_patch(patch, box, (10, 10))
    assert local.size == 0 or not local.any()
    rle = patch_to_rle(patch, box, (10, 10))
    assert mask_util.area(rle) == 0 and rle == {
        "size": [10, 10],
        "counts": mask_util.encode(np.zeros((10, 10), np.uint8, order="F"))["counts"].decode(),
    }


def test_sub_pixel_box_around_a_centre_gets_that_pixel() -> None:
    local, origin = paste_patch(np.ones((28, 28)), (4.4, 4.4, 4.6, 4.6), (10, 10))
    assert origin == (4, 4) and local.tolist() == [[True]]


def test_patches_to_rle_many_and_empty() -> None:
    rng = np.random.default_rng(0)
    patches = rng.random((5, 28, 28)).astype(np.float32)
    boxes = np.array([[0, 0, 5, 5], [2, 3, 30, 9], [-4, 1, 7, 33], [1, 1, 1.2, 1.2], [3, 3, 4, 4]])
    rles = patches_to_rle(patches, boxes, (25, 21))
    assert rles == [patch_to_rle(p, b, (25, 21)) for p, b in zip(patches, boxes, strict=True)]
    assert patches_to_rle(np.zeros((0, 28, 28)), np.zeros((0, 4)), (25, 21)) == []


@pytest.mark.parametrize(
    "patch,box,size,threshold,match",
    [
        (np.zeros((28, 27)), (0, 0, 1, 1), (5, 5), 0.5, "square"),
        (np.zeros((28,)), (0, 0, 1, 1), (5, 5), 0.5, "square"),
        (np.full((4, 4), np.nan), (0, 0, 1, 1), (5, 5), 0.5, "NaN"),
        (np.zeros((4, 4)), (0, 0, 1), (5, 5), 0.5, "box must be 4"),
        (np.zeros((4, 4)), (0, 0, np.inf, 1), (5, 5), 0.5, "box must be 4"),
        (np.zeros((4, 4)), (0, 0, 1, 1), (0, 5), 0.5, "image_size"),
        (np.zeros((4, 4)), (0, 0, 1, 1), (5.5, 5), 0.5, "image_size"),
        (np.zeros((4, 4)), (0, 0, 1, 1), (5,), 0.5, "image_size"),
        (np.zeros((4, 4)), (0, 0, 1, 1), (5, 5), float("nan"), "threshold"),
    ],
)
def test_bad_input_is_rejected_clearly(patch, box, size, threshold, match) -> None:
    with pytest.raises(ValueError, match=match):
        patch_to_rle(patch, box, size, threshold)


def test_patches_to_rle_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="2 patches for 3 boxes"):
        patches_to_rle(np.zeros((2, 4, 4)), np.zeros((3, 4)), (5, 5))
    with pytest.raises(ValueError, match=r"\(N, M, M\)"):
        patches_to_rle(np.zeros((2, 4)), np.zeros((2, 4)), (5, 5))


def test_large_image_rle_is_made_from_the_window() -> None:
    # 20000 x 20000 image (a full uint8 mask would be 400 MB): the window alone is pasted
    patch = np.ones((28, 28), np.float32)
    rle = patch_to_rle(patch, (19990.0, 100.0, 20000.0, 110.0), (20000, 20000))
    assert mask_util.area(rle) == 100
    assert mask_util.toBbox(rle).tolist() == [19990.0, 100.0, 10.0, 10.0]
