"""SniperDetectionModel in SAHI: get_sliced_prediction with a hand-made predictor (image px,
shift once, classes, channel order, masks), the tiny real model built from files, and SAHI's
own CLI through sniper.integrations.sahi_cli (skipped without the [sahi] extra)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

pytest.importorskip("sahi", reason='sahi not installed: pip install "sniper-autofocus[sahi]"')

from sahi.auto_model import AutoDetectionModel  # noqa: E402
from sahi.predict import get_prediction, get_sliced_prediction  # noqa: E402

from autofocus.config import setup_cfg as autofocus_setup_cfg  # noqa: E402
from sniper.config import setup_cfg  # noqa: E402
from sniper.inference import SniperPredictor  # noqa: E402
from sniper.inference.mask_patches import patch_to_rle  # noqa: E402
from sniper.integrations.sahi_cli import main as sahi_cli_main  # noqa: E402
from sniper.integrations.sahi_convert import (  # noqa: E402
    from_object_predictions,
    to_object_predictions,
)
from sniper.integrations.sahi_model import (  # noqa: E402
    SniperDetectionModel,
    register_model_type,
)
from sniper.integrations.single_scale import single_scale_predictor  # noqa: E402

TINY_YAML = """MODEL:
  BACKBONE: {NAME: mobilenet_v2_fpn}
  FPN: {OUT_CHANNELS: 16}
  ROI_BOX_HEAD: {FC_DIM: 32}
  NUM_CLASSES: 3
  RPN: {PRE_NMS_TOPK_TEST: 100, POST_NMS_TOPK_TEST: 100}
  ROI_HEADS: {SCORE_THRESH_TEST: 0.0}
  DEVICE: cpu
"""
# x1, y1, x2, y2 image px of the RGB image; each lies whole in one 64 px slice (slices start
# at x = 0, 52, 104, 136 and y = 0, 52, 86) and is cut by the others
RED, GREEN = (60, 10, 90, 40), (140, 90, 180, 120)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _squares() -> np.ndarray:
    image = np.zeros((150, 200, 3), np.uint8)  # RGB
    image[RED[1] : RED[3], RED[0] : RED[2], 0] = 255
    image[GREEN[1] : GREEN[3], GREEN[0] : GREEN[2], 1] = 255
    return image


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


class SquareFinder:
    """Stands in for a detector taking BGR: class 0 = a whole red square (channel 2 in BGR),
    class 1 = a whole green one; a square cut by the slice is not found."""

    input_format = "BGR"

    def __init__(self, masks: bool = False) -> None:
        self.masks = masks
        self.calls = 0

    def __call__(self, image: np.ndarray) -> dict:
        self.calls += 1
        boxes, classes, masks = [], [], []
        for cls, channel, (x1, y1, x2, y2) in ((0, 2, RED), (1, 1, GREEN)):
            on = image[:, :, channel] == 255
            ys, xs = np.nonzero(on)
            if ys.size == (x2 - x1) * (y2 - y1):
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                classes.append(cls)
                masks.append(_rle(on))
        out = {
            "boxes": np.array(boxes, np.float32).reshape(-1, 4),
            "scores": np.full(len(boxes), 0.9, np.float32),
            "classes": np.array(classes, np.int64),
        }
        if self.masks:
            out["masks"] = masks
        return out


def _boxes_by_class(preds) -> dict[int, list[float]]:
    return {p.category.id: p.bbox.to_xyxy() for p in preds}


@pytest.mark.parametrize("standard", [True, False])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_sliced_prediction_in_image_px(standard, batch_size) -> None:
    finder = SquareFinder()
    model = SniperDetectionModel(model=finder, category_mapping={"0": "red", "1": "green"})
    result = get_sliced_prediction(
        _squares(),
        model,
        slice_height=64,
        slice_width=64,
        perform_standard_pred=standard,
        batch_size=batch_size,
        verbose=0,
    )
    preds = result.object_prediction_list
    assert _boxes_by_class(preds) == {0: list(RED), 1: list(GREEN)}  # shifted exactly once
    assert sorted(p.category.name for p in preds) == ["green", "red"]
    n_slices = 4 * 3  # 200 x 150 by 64 px slices overlapping by 0.2 (51 px steps, edges flush)
    assert finder.calls == n_slices + standard


def test_masks_come_back_in_image_px() -> None:
    model = SniperDetectionModel(model=SquareFinder(masks=True))
    result = get_sliced_prediction(_squares(), model, slice_height=64, slice_width=64, verbose=0)
    back = from_object_predictions(result.object_prediction_list, image_size=(150, 200))
    for rle, cls in zip(back["masks"], back["classes"], strict=True):
        x1, y1, x2, y2 = RED if cls == 0 else GREEN
        expected = np.zeros((150, 200), bool)
        expected[y1:y2, x1:x2] = True
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), expected)


def test_confidence_threshold_is_strict_and_mask_threshold_repastes() -> None:
    patch = np.tile(np.linspace(0.0, 1.0, 28), (28, 1))  # rising to the right
    frame = np.array([[4.0, 2.0, 32.0, 30.0]])

    def predictor(image):
        return {
            "boxes": np.array([[4, 2, 32, 30], [0, 0, 5, 5]], np.float32),
            "scores": np.array([0.5, 0.25], np.float32),
            "classes": np.array([2, 0]),
            "mask_patches": np.stack([patch, patch]),
            "mask_boxes": np.concatenate([frame, [[0, 0, 5, 5]]]),
            "masks": [{"size": [40, 40], "counts": "PP`1"}] * 2,  # not used: re-pasted
        }

    model = SniperDetectionModel(model=predictor, confidence_threshold=0.25, mask_threshold=0.25)
    model.perform_inference(np.zeros((40, 40, 3), np.uint8))
    model.convert_original_predictions(shift_amount=[10, 20], full_shape=[100, 100])
    (pred,) = model.object_prediction_list  # 0.25 is not > 0.25
    assert pred.category.id == 2 and pred.category.name == "2"
    back = from_object_predictions([pred])
    expected = mask_utils.decode(
        {
            "size": [40, 40],
            "counts": patch_to_rle(patch, frame[0], (40, 40), 0.25)["counts"].encode(),
        }
    )
    shifted = np.zeros((100, 100), np.uint8)
    shifted[20:60, 10:50] = expected
    got = mask_utils.decode({"size": [100, 100], "counts": back["masks"][0]["counts"].encode()})
    np.testing.assert_array_equal(got, shifted)


def _tiny_files(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    torch.manual_seed(0)
    predictor = SniperPredictor(setup_cfg(str(config), []))
    weights = tmp_path / "tiny.pth"
    torch.save(predictor.model.state_dict(), weights)
    return config, weights


def _image(seed: int = 0, h: int = 96, w: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_real_model_from_files_equals_our_predictor(tmp_path) -> None:
    config, weights = _tiny_files(tmp_path)
    register_model_type()
    model = AutoDetectionModel.from_pretrained(
        "sniper",
        model_path=str(weights),
        config_path=str(config),
        confidence_threshold=0.05,
        scale=2.0,
    )
    assert isinstance(model, SniperDetectionModel)
    assert model.model.inference.scales == [2.0]
    assert model.category_mapping == {"0": "0", "1": "1", "2": "2"}
    cfg = setup_cfg(str(config), ["MODEL.WEIGHTS", str(weights)])
    ours = SniperPredictor(
        cfg, input_format="RGB", scales=[2.0], valid_ranges=[(-1, -1)], merge="nms"
    )
    image = _image()
    expected = ours(image)
    keep = expected["scores"] > 0.05
    assert keep.sum() > 0
    got = from_object_predictions(get_prediction(image, model).object_prediction_list)
    np.testing.assert_array_equal(got["boxes"], expected["boxes"][keep])
    np.testing.assert_array_equal(got["scores"], expected["scores"][keep])
    np.testing.assert_array_equal(got["classes"], expected["classes"][keep])


def test_sahi_cli_with_our_model_equals_python_api(tmp_path) -> None:
    config, weights = _tiny_files(tmp_path)
    source = tmp_path / "images"
    source.mkdir()
    image = _image(1, 100, 140)
    cv2.imwrite(str(source / "a.png"), image[:, :, ::-1])  # RGB image saved as BGR file
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": 100, "width": 140}],
        "annotations": [],
        "categories": [{"id": i, "name": str(i)} for i in range(3)],
    }
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    args = ["predict", "--model_type", "sniper", "--model_config_path", str(config)]
    args += ["--model_path", str(weights), "--source", str(source), "--novisual"]
    args += ["--dataset_json_path", str(tmp_path / "gt.json"), "--project", str(tmp_path)]
    args += ["--slice_height", "64", "--slice_width", "64", "--model_confidence_threshold", "0.2"]
    args += ["--verbose", "0"]
    sahi_cli_main(args)
    written = json.loads((tmp_path / "exp" / "result.json").read_text())
    model = SniperDetectionModel(
        model_path=str(weights), config_path=str(config), confidence_threshold=0.2
    )
    preds = get_sliced_prediction(image, model, slice_height=64, slice_width=64, verbose=0)
    expected = sorted(
        (p.category.id, round(p.score.value, 6), *np.round(p.bbox.to_xywh(), 3))
        for p in preds.object_prediction_list
    )
    assert expected
    got = sorted((d["category_id"], round(d["score"], 6), *np.round(d["bbox"], 3)) for d in written)
    assert got == expected


def test_bad_input_is_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="needs config_path"):
        SniperDetectionModel()
    with pytest.raises(ValueError, match="model must be a callable predictor"):
        SniperDetectionModel(model=3)
    with pytest.raises(ValueError, match="opts must be KEY VALUE pairs"):
        SniperDetectionModel(model=SquareFinder(), opts=["MODEL.DEVICE"])
    with pytest.raises(ValueError, match="image_size must be a positive integer"):
        SniperDetectionModel(model=SquareFinder(), image_size=0)
    with pytest.raises(ValueError, match="scale: "):
        SniperDetectionModel(model=SquareFinder(), scale=-2.0)
    with pytest.raises(ValueError, match="scale: "):
        SniperDetectionModel(model=SquareFinder(), scale=[512, 512, 3])
    assert SniperDetectionModel(model=SquareFinder(), image_size=640).scale == (640.0, 640.0)
    assert SniperDetectionModel(model=SquareFinder(), scale=[800, -1]).scale == (800.0, -1.0)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_YAML)
    model = SniperDetectionModel(
        config_path=str(config), predictor_class="nowhere.Nothing", load_at_init=False
    )
    with pytest.raises(ValueError, match="predictor_class 'nowhere.Nothing' cannot be imported"):
        model.load_model()
    with pytest.raises(RuntimeError, match="has no model"):
        model.perform_inference(np.zeros((8, 8, 3), np.uint8))


AF_MASK_YAML = TINY_YAML.replace(
    "MODEL:\n", "MODEL:\n  META_ARCHITECTURE: AutoFocusRCNN\n  MASK_ON: true\n"
)


def test_autofocus_mask_model_equals_its_converted_predictions(tmp_path) -> None:
    """A trained AutoFocus detector with a mask head, from files: what SAHI gets is our
    single-scale predictor's output, filtered and converted (masks as polygons)."""
    config = tmp_path / "af.yaml"
    config.write_text(AF_MASK_YAML)
    torch.manual_seed(0)
    model = SniperDetectionModel(
        config_path=str(config),
        confidence_threshold=0.1,
        config_setup="autofocus.config.setup_cfg",
        modules=["autofocus.modeling"],
    )
    assert type(model.model.model).__name__ == "AutoFocusRCNN"
    weights = tmp_path / "af.pth"
    torch.save(model.model.model.state_dict(), weights)
    model = SniperDetectionModel(
        model_path=str(weights),
        config_path=str(config),
        confidence_threshold=0.1,
        config_setup="autofocus.config.setup_cfg",
        modules="autofocus.modeling",
    )
    cfg = autofocus_setup_cfg(str(config), ["MODEL.WEIGHTS", str(weights)])
    out = single_scale_predictor(cfg)(_image(2, 64, 80))
    keep = np.flatnonzero(out["scores"] > 0.1)
    kept = {k: out[k][keep] for k in ("boxes", "scores", "classes")}
    kept["masks"] = [out["masks"][i] for i in keep]
    expected = to_object_predictions(kept, ["0", "1", "2"], full_shape=(64, 80))
    got = get_prediction(_image(2, 64, 80), model).object_prediction_list
    assert len(got) == len(expected) > 0
    assert any(p.mask is not None for p in got)
    for a, b in zip(got, expected, strict=True):
        assert a.bbox.to_xyxy() == b.bbox.to_xyxy()
        assert (a.score.value, a.category.id) == (b.score.value, b.category.id)
        assert (a.mask is None) == (b.mask is None)
        if a.mask is not None:
            assert a.mask.segmentation == b.mask.segmentation


def test_cli_mistake_is_one_line(tmp_path, capsys) -> None:
    args = ["predict", "--model_type", "sniper", "--model_config_path", str(tmp_path / "no.yaml")]
    args += ["--source", str(tmp_path), "--novisual", "--project", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        sahi_cli_main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "no.yaml" in err[-1]


def test_batched_slices_use_predict_batch_and_agree(tmp_path) -> None:
    config, weights = _tiny_files(tmp_path)
    model = SniperDetectionModel(
        model_path=str(weights), config_path=str(config), confidence_threshold=0.2
    )
    calls = []
    batch = model.model.predict_batch
    model.model.predict_batch = lambda images: calls.append(len(images)) or batch(images)
    image = _image(3, 100, 140)
    kwargs = {"slice_height": 64, "slice_width": 64, "verbose": 0}
    one = get_sliced_prediction(image, model, batch_size=1, **kwargs).object_prediction_list
    four = get_sliced_prediction(image, model, batch_size=4, **kwargs).object_prediction_list
    # 3 x 2 slices of 64 px (x at 0, 52, 76; y at 0, 36), then the full-image pass (one
    # image; the predictor's __call__ is predict_batch of one)
    assert calls == [1] * 7 + [4, 2, 1]
    a, b = from_object_predictions(one), from_object_predictions(four)
    assert len(a["boxes"]) == len(b["boxes"]) > 0
    np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-3)
    np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
    np.testing.assert_array_equal(a["classes"], b["classes"])
