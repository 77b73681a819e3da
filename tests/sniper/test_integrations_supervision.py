"""Our detections <-> supervision.Detections: exact round trips, masks against pycocotools,
the InferenceSlicer callback (skipped without the [supervision] extra)."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

sv = pytest.importorskip(
    "supervision", reason='supervision not installed: pip install "sniper-autofocus[supervision]"'
)

from sniper.integrations.supervision_convert import (  # noqa: E402
    from_detections,
    supervision_callback,
    to_detections,
)

H, W = 40, 50


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _masks() -> list[np.ndarray]:
    rect = np.zeros((H, W), bool)
    rect[5:15, 10:30] = True
    yy, xx = np.mgrid[:H, :W]
    disc = (yy - 25) ** 2 + (xx - 30) ** 2 <= 64
    edge = np.zeros((H, W), bool)
    edge[30:, 45:] = True  # touches the bottom-right corner
    ring = disc & ((yy - 25) ** 2 + (xx - 30) ** 2 > 9)  # a hole: RLE keeps it
    return [rect, disc, edge, ring, np.zeros((H, W), bool)]


def _out(with_masks: bool = True) -> dict:
    masks = _masks()
    out = {
        "boxes": np.array(
            [[10, 5, 30, 15], [22, 17, 39, 34], [45, 30, 50, 40], [21.5, 16, 39, 34], [1, 1, 2, 2]],
            np.float32,
        ),
        "scores": np.array([0.9, 0.8, 0.5, 0.3, 0.1], np.float32),
        "classes": np.array([2, 0, 1, 1, 0], np.int64),
        "pixels": 123,  # other keys are ignored
    }
    if with_masks:
        out["masks"] = [_rle(m) for m in masks]
    return out


@pytest.mark.parametrize("mask_format", [None, "dense", "compact"])
def test_round_trip_is_exact(mask_format) -> None:
    out = _out()
    det = to_detections(out, mask_format=mask_format)
    np.testing.assert_array_equal(det.xyxy, out["boxes"])
    np.testing.assert_array_equal(det.confidence, out["scores"])
    np.testing.assert_array_equal(det.class_id, out["classes"])
    back = from_detections(det)
    for key in ("boxes", "scores", "classes"):
        np.testing.assert_array_equal(back[key], out[key])
        assert back[key].dtype == out[key].dtype
    if mask_format is None:
        assert det.mask is None and "masks" not in back
    else:
        assert [r["counts"] for r in back["masks"]] == [r["counts"] for r in out["masks"]]
        assert all(r["size"] == [H, W] for r in back["masks"])


@pytest.mark.parametrize("mask_format", ["dense", "compact"])
def test_masks_equal_pycocotools_decode(mask_format) -> None:
    out = _out()
    det = to_detections(out, mask_format=mask_format)
    dense = np.asarray(det.mask)
    assert dense.shape == (5, H, W) and dense.dtype == bool
    for i, rle in enumerate(out["masks"]):
        expected = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        np.testing.assert_array_equal(dense[i], expected.astype(bool))
        np.testing.assert_array_equal(dense[i], _masks()[i])


def test_compact_masks_make_no_full_size_array() -> None:
    det = to_detections(_out(), mask_format="compact")
    assert isinstance(det.mask, sv.CompactMask)
    crop_pixels = sum(det.mask.crop(i).size for i in range(len(det)))
    assert crop_pixels == 10 * 20 + 17 * 17 + 10 * 5 + 17 * 17 + 1  # tight boxes (+1 empty)


def test_class_names_and_empty_detections() -> None:
    det = to_detections(_out(False), class_names=["a", "b", "c"])
    assert det.data["class_name"].tolist() == ["c", "a", "b", "b", "a"]
    with pytest.raises(ValueError, match="class 2 has no name"):
        to_detections(_out(False), class_names=["a", "b"])
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0), "masks": []}
    for mask_format in (None, "dense", "compact"):
        det = to_detections(empty, mask_format=mask_format, image_size=(H, W))
        assert len(det) == 0
        back = from_detections(det)
        assert back["boxes"].shape == (0, 4) and back["classes"].dtype == np.int64
    with pytest.raises(ValueError, match="no mask and no image_size"):
        to_detections(empty, mask_format="dense")


def test_from_detections_sorts_best_first() -> None:
    out = _out()
    det = to_detections(out, mask_format="compact")[np.array([3, 0, 4, 1, 2])]
    back = from_detections(det)
    np.testing.assert_array_equal(back["scores"], out["scores"])
    np.testing.assert_array_equal(back["boxes"], out["boxes"])
    assert [r["counts"] for r in back["masks"]] == [r["counts"] for r in out["masks"]]


def test_bad_input_names_the_field() -> None:
    out = _out()
    with pytest.raises(ValueError, match="mask_format must be one of"):
        to_detections(out, mask_format="full")
    with pytest.raises(ValueError, match="no 'masks'"):
        to_detections(_out(False), mask_format="dense")
    with pytest.raises(ValueError, match="'scores' has 2 entries for 5 boxes"):
        to_detections({**out, "scores": np.ones(2)})
    with pytest.raises(ValueError, match="'classes' must be integers >= 0"):
        to_detections({**out, "classes": np.array([0, 1, -1, 0, 0])})
    with pytest.raises(ValueError, match="no 'boxes' key"):
        to_detections({"scores": [], "classes": []})
    with pytest.raises(ValueError, match="Detections.confidence is None"):
        from_detections(sv.Detections(xyxy=np.zeros((1, 4)), class_id=np.zeros(1, int)))
    with pytest.raises(ValueError, match="expected supervision.Detections"):
        from_detections(out)


def test_callback_runs_in_inference_slicer_in_image_px() -> None:
    """InferenceSlicer shifts the callback's slice-px boxes; the white square comes back
    at its image position (every slice's part of it merged away by its NMS)."""
    image = np.zeros((120, 160, 3), np.uint8)
    image[50:70, 90:110] = 255

    def predictor(image_slice: np.ndarray) -> dict:
        ys, xs = np.nonzero(image_slice[:, :, 0] == 255)
        if ys.size < 400:  # only a slice holding the whole square detects it
            return {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "classes": np.zeros(0)}
        box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        return {"boxes": np.array([box], np.float32), "scores": [0.9], "classes": [1]}

    slicer = sv.InferenceSlicer(
        callback=supervision_callback(predictor, class_names=["a", "b"]),
        slice_wh=64,
        overlap_wh=32,
    )
    det = slicer(image)
    assert len(det) == 1
    np.testing.assert_array_equal(det.xyxy, [[90, 50, 110, 70]])
    assert det.class_id.tolist() == [1] and det.data["class_name"].tolist() == ["b"]
