"""Our detections <-> SAHI ObjectPrediction lists: exact round trips, the shift applied once,
masks against SAHI's own polygon rasterisation (skipped without the [sahi] extra)."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

pytest.importorskip("sahi", reason='sahi not installed: pip install "sniper-autofocus[sahi]"')

from sahi.annotation import Mask  # noqa: E402
from sahi.prediction import ObjectPrediction  # noqa: E402

from sniper.integrations.sahi_convert import (  # noqa: E402
    from_object_predictions,
    polygons_to_rle,
    rle_to_polygons,
    to_object_predictions,
)

H, W = 40, 50


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def _shapes() -> list[np.ndarray]:
    rect = np.zeros((H, W), bool)
    rect[5:15, 10:30] = True
    yy, xx = np.mgrid[:H, :W]
    disc = (yy - 25) ** 2 + (xx - 30) ** 2 <= 64
    corner = np.zeros((H, W), bool)
    corner[30:, 44:] = True
    return [rect, disc, corner]


def _out(with_masks: bool = False) -> dict:
    out = {
        "boxes": np.array(
            [[10, 5, 30, 15], [22.25, 17, 38.5, 33.75], [44, 30, 50, 40]], np.float32
        ),
        "scores": np.array([0.9, 0.8, 0.5], np.float32),
        "classes": np.array([2, 0, 1], np.int64),
    }
    if with_masks:
        out["masks"] = [_rle(m) for m in _shapes()]
    return out


def test_boxes_round_trip_exactly() -> None:
    out = _out()
    preds = to_object_predictions(out, ["a", "b", "c"])
    assert [p.category.id for p in preds] == [2, 0, 1]
    assert [p.category.name for p in preds] == ["c", "a", "b"]
    assert [p.bbox.to_xyxy() for p in preds] == out["boxes"].tolist()
    back = from_object_predictions(preds)
    for key in ("boxes", "scores", "classes"):
        np.testing.assert_array_equal(back[key], out[key])
        assert back[key].dtype == out[key].dtype
    assert "masks" not in back
    assert [p.category.name for p in to_object_predictions(out)] == ["2", "0", "1"]


def test_shift_is_applied_once() -> None:
    """Slice px + shift: SAHI keeps the shift beside the box; coming back, it is added once."""
    out = _out()
    preds = to_object_predictions(out, shift_amount=(100, 7), full_shape=(200, 300))
    assert [p.bbox.to_xyxy() for p in preds] == out["boxes"].tolist()  # still slice px
    assert all(p.bbox.shift_amount == (100, 7) for p in preds)
    back = from_object_predictions(preds)
    np.testing.assert_array_equal(back["boxes"], out["boxes"] + np.float32([100, 7, 100, 7]))
    again = from_object_predictions([p.get_shifted_object_prediction() for p in preds])
    np.testing.assert_array_equal(again["boxes"], back["boxes"])


def test_masks_round_trip_and_equal_sahi_rasterisation() -> None:
    out = _out(with_masks=True)
    preds = to_object_predictions(out)
    for p, shape in zip(preds, _shapes(), strict=True):
        np.testing.assert_array_equal(p.mask.bool_mask, shape)  # SAHI's own fillPoly
        ys, xs = np.nonzero(shape)  # SAHI's box of a masked prediction: the polygons' extent
        assert p.bbox.to_xyxy() == [xs.min(), ys.min(), xs.max(), ys.max()]
    back = from_object_predictions(preds)
    assert [r["counts"] for r in back["masks"]] == [r["counts"] for r in out["masks"]]


def test_masks_of_slices_shift_into_the_image() -> None:
    shape = np.zeros((H, W), bool)
    shape[5:15, 10:30] = True
    out = {"boxes": [[10, 5, 30, 15]], "scores": [0.7], "classes": [0], "masks": [_rle(shape)]}
    preds = to_object_predictions(out, shift_amount=(60, 20), full_shape=(100, 120))
    back = from_object_predictions(preds)
    expected = np.zeros((100, 120), bool)
    expected[25:35, 70:90] = True
    np.testing.assert_array_equal(_decode(back["masks"][0]), expected)
    assert back["masks"][0]["size"] == [100, 120]


def test_polygons_to_rle_equals_sahi_mask_on_any_polygon() -> None:
    """The window rule against SAHI's full-image ``Mask.bool_mask`` (cv2.fillPoly), for
    random polygons reaching outside the image."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        polygons = [rng.uniform(-10, 60, 2 * int(rng.integers(3, 8))).round(1).tolist()]
        polygons = [[max(v, 0.0) for v in p] for p in polygons]  # SAHI: no negative vertex
        expected = Mask(polygons, full_shape=[H, W]).bool_mask
        np.testing.assert_array_equal(_decode(polygons_to_rle(polygons, H, W)), expected)


def test_empty_and_thin_masks_stay_boxes() -> None:
    empty = np.zeros((H, W), bool)
    line = np.zeros((H, W), bool)
    line[3, 4] = True  # one pixel: fewer than three polygon points
    out = {
        "boxes": [[0, 0, 5, 5], [4, 3, 5, 4]],
        "scores": [0.6, 0.5],
        "classes": [0, 0],
        "masks": [_rle(empty), _rle(line)],
    }
    assert rle_to_polygons(out["masks"][0]) == [] and rle_to_polygons(out["masks"][1]) == []
    preds = to_object_predictions(out)
    assert all(p.mask is None for p in preds)
    assert [p.bbox.to_xyxy() for p in preds] == [[0, 0, 5, 5], [4, 3, 5, 4]]


def test_mixed_masks_come_back_with_empty_rle() -> None:
    shape = _shapes()[0]
    with_mask = ObjectPrediction(
        bbox=[10, 5, 30, 15],
        category_id=0,
        score=0.4,
        segmentation=rle_to_polygons(_rle(shape)),
        full_shape=[H, W],
    )
    without = ObjectPrediction(bbox=[1, 2, 3, 4], category_id=1, score=0.9)
    back = from_object_predictions([with_mask, without])
    assert back["scores"].tolist() == pytest.approx([0.9, 0.4])
    assert not _decode(back["masks"][0]).any()
    np.testing.assert_array_equal(_decode(back["masks"][1]), shape)


def test_bad_input_names_the_field() -> None:
    with pytest.raises(ValueError, match="class 2 has no name"):
        to_object_predictions(_out(), ["a"])
    with pytest.raises(ValueError, match="shift_amount must be two integers"):
        to_object_predictions(_out(), shift_amount=(1.5, 0))
    with pytest.raises(ValueError, match="SAHI boxes must be >= 0"):
        to_object_predictions({"boxes": [[-1, 0, 2, 2]], "scores": [1], "classes": [0]})
    with pytest.raises(ValueError, match="predictions\\[0\\] is a dict"):
        from_object_predictions([{"bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="'boxes' must be \\(N, 4\\)"):
        to_object_predictions({"boxes": [[0, 1, 2]], "scores": [1], "classes": [0]})
