"""SniperPredictor (tiny real model), the demo entry point and draw_detections."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
import torch

from sniper.config import add_sniper_config, get_cfg
from sniper.demo import main
from sniper.inference.predictor import SniperPredictor
from sniper.inputs import dataset_labels, list_image_files, read_images, unique_output_name
from sniper.modeling import build_model
from sniper.visualization_dets import class_label, draw_detections

TINY = [
    "MODEL.BACKBONE.NAME",
    "mobilenet_v2_fpn",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "MODEL.NUM_CLASSES",
    "3",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST",  # >= TEST.MAX_DETS_PER_IMAGE
    "100",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
    "SNIPER.TEST_SCALES",
    "[1.5, 1.0, [64, 96]]",
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small shared CPU, more threads only add contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def clean_synthetic(tmp_path, monkeypatch):
    """No built-in dataset registered before or after; their cache root in tmp_path."""
    from sniper.data.catalog import DatasetCatalog, MetadataCatalog
    from sniper.data.synthetic import SYNTHETIC_SPLITS

    def clear() -> None:
        for name in SYNTHETIC_SPLITS:
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)

    monkeypatch.setenv("SNIPER_DATASETS", str(tmp_path / "datasets"))
    clear()
    yield
    clear()


def _cfg(*opts: str):
    cfg = add_sniper_config(get_cfg())
    cfg.merge_from_list([*TINY, *opts])
    return cfg


def _predictor(*opts: str, seed: int = 0, **kwargs) -> SniperPredictor:
    torch.manual_seed(seed)
    return SniperPredictor(_cfg(*opts), **kwargs)


def _image(seed: int = 0, h: int = 96, w: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


class Recorder(torch.nn.Module):
    """Stands in for the detector: records its inputs, detects nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, images):
        self.inputs += list(images)
        return [
            {
                "boxes": torch.zeros(0, 4),
                "scores": torch.zeros(0),
                "labels": torch.zeros(0, dtype=torch.int64),
            }
            for _ in images
        ]


def test_outputs_are_numpy_in_image_px(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        predictor = _predictor()
    assert "MODEL.WEIGHTS is empty" in caplog.text
    assert not predictor.model.training
    out = predictor(_image())
    assert out["boxes"].dtype == np.float32 and out["boxes"].shape[1] == 4
    assert out["scores"].dtype == np.float32 and out["classes"].dtype == np.int64
    assert len(out["boxes"]) == len(out["scores"]) == len(out["classes"]) > 0
    assert out["classes"].min() >= 0 and out["classes"].max() < 3
    assert (out["boxes"] >= 0).all() and (out["boxes"][:, [0, 2]] <= 128).all()
    assert (out["boxes"][:, [1, 3]] <= 96).all()
    assert (np.diff(out["scores"]) <= 0).all()
    # Canvases 144 x 192, 96 x 128 and (64, 96) -> factor 2/3 -> 64 x 85.
    assert out["pixels_per_scale"] == [144 * 192, 96 * 128, 64 * 85]
    assert out["pixels"] == sum(out["pixels_per_scale"])


def test_bgr_and_rgb_inputs_reach_the_model_in_cfg_format() -> None:
    bgr = _image(1)
    out_bgr = _predictor()(bgr)
    out_rgb = _predictor(input_format="RGB")(bgr[:, :, ::-1])
    np.testing.assert_array_equal(out_bgr["boxes"], out_rgb["boxes"])
    np.testing.assert_array_equal(out_bgr["scores"], out_rgb["scores"])
    for cfg_format, given, flipped in [
        ("RGB", "BGR", True),
        ("BGR", "BGR", False),
        ("RGB", "RGB", False),
        ("BGR", "RGB", True),
    ]:
        predictor = _predictor(
            "INPUT.FORMAT",
            cfg_format,
            "SNIPER.TEST_SCALES",
            "[1.0]",
            "SNIPER.TEST_VALID_RANGES",
            "[[-1, -1]]",
            input_format=given,
        )
        predictor.inference.model = recorder = Recorder()
        out = predictor(bgr)
        expected = bgr[:, :, ::-1] if flipped else bgr
        assert torch.equal(recorder.inputs[0], torch.from_numpy(expected.copy()).permute(2, 0, 1))
        assert out["boxes"].shape == (0, 4) and out["pixels"] == 96 * 128


@pytest.mark.parametrize("wrapped", [True, False])
def test_loads_weights_from_checkpoint_or_state_dict(tmp_path, wrapped: bool) -> None:
    torch.manual_seed(0)
    reference = build_model(_cfg())
    state = reference.state_dict()
    path = tmp_path / "model_final.pth"
    torch.save({"model": state, "iteration": 5} if wrapped else state, path)
    predictor = _predictor("MODEL.WEIGHTS", str(path), seed=1)
    loaded = predictor.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    fresh = _predictor(seed=1).model.state_dict()
    assert not all(torch.equal(fresh[k], v) for k, v in state.items())


def test_missing_weights_file_names_path(tmp_path) -> None:
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        _predictor("MODEL.WEIGHTS", missing)


def test_bad_images_raise_value_errors() -> None:
    predictor = _predictor()
    predictor.inference.model = Recorder()
    with pytest.raises(ValueError, match="float32"):
        predictor(_image().astype(np.float32))
    with pytest.raises(ValueError, match=r"\(96, 128\)"):
        predictor(_image()[:, :, 0])
    with pytest.raises(ValueError, match=r"image 1: .*\(96, 128, 4\)"):
        predictor.predict_batch([_image(), np.zeros((96, 128, 4), np.uint8)])
    with pytest.raises(ValueError, match="numpy"):
        predictor(torch.zeros(96, 128, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="input_format"):
        SniperPredictor(_cfg(), input_format="GRAY")
    assert predictor.predict_batch([]) == []


def test_predict_batch_matches_single_images() -> None:
    predictor = _predictor()
    images = [_image(2), _image(3)]
    batch = predictor.predict_batch(images)
    for image, out in zip(images, batch, strict=True):
        single = predictor(image)
        assert out["pixels"] == single["pixels"]
        np.testing.assert_allclose(out["scores"][:10], single["scores"][:10], atol=1e-4)
        np.testing.assert_allclose(out["boxes"][:10], single["boxes"][:10], atol=1e-2)


def test_draw_detections() -> None:
    image = np.zeros((80, 120, 3), np.uint8)
    boxes = np.array([[10, 10, 60, 50], [70, 20, 110, 70]], np.float32)
    drawn = draw_detections(image, boxes, [0.9, 0.2], [0, 5], ["cat", "dog"], score_thresh=0.5)
    assert image.max() == 0 and drawn.shape == image.shape and drawn.dtype == np.uint8
    assert drawn[30, 10].any() and drawn[30, 59].any()  # left and right edges of box 0
    assert not drawn[45, 109].any()  # box 1 is below the threshold
    assert np.array_equal(draw_detections(image, boxes, [0.1, 0.2], [0, 1], None, 0.5), image)
    assert class_label(5, ["cat", "dog"]) == "class 5" and class_label(1, ["cat", "dog"]) == "dog"
    with pytest.raises(ValueError, match="boxes"):
        draw_detections(image, boxes, [0.9], [0, 1])


@pytest.mark.usefixtures("clean_synthetic")
def test_demo_writes_images_and_results(tmp_path, caplog) -> None:
    folder, out_dir = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"img{i}.png"), _image(i, 80, 100))
    (folder / "broken.jpg").write_bytes(b"not an image")
    opts = [*TINY, "MODEL.NUM_CLASSES", "10", "DATASETS.TEST", "('synthetic_digits_mini',)"]
    with caplog.at_level(logging.WARNING):
        assert (
            main(["--input", str(folder), "--output", str(out_dir), "--confidence", "0.0", *opts])
            == 0
        )
    assert "broken.jpg" in caplog.text
    assert (out_dir / "img0.png").is_file() and (out_dir / "img1.png").is_file()
    assert cv2.imread(str(out_dir / "img0.png")).shape == (80, 100, 3)
    results = json.loads((out_dir / "results.json").read_text())
    assert results and {r["image_id"] for r in results} == {"img0", "img1"}
    for r in results:
        assert set(r) == {"image_id", "file_name", "category_id", "bbox", "score"}
        assert 1 <= r["category_id"] <= 10 and len(r["bbox"]) == 4 and r["bbox"][2] >= 0


@pytest.mark.usefixtures("clean_synthetic")
def test_demo_inputs_and_labels(tmp_path) -> None:
    for name in ("a.jpg", "b.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert list_image_files([str(tmp_path)]) == [str(tmp_path / "a.jpg"), str(tmp_path / "b.png")]
    assert list_image_files([str(tmp_path / "*.png"), str(tmp_path / "b.png")]) == [
        str(tmp_path / "b.png")
    ]
    with pytest.raises(FileNotFoundError, match=r"\*\.gif"):
        list_image_files([str(tmp_path / "*.gif")])
    with pytest.raises(SystemExit):
        main(["--input", str(tmp_path / "*.gif"), "--output", str(tmp_path / "out")])
    names, to_dataset = dataset_labels(["synthetic_digits_mini"])
    assert names == list("0123456789") and to_dataset[0] == 1
    assert dataset_labels([]) == (None, {})
    assert not (tmp_path / "datasets").exists()  # registering generates nothing


def test_read_images_skips_unreadable_files_and_names_outputs(tmp_path, caplog) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), _image(0, 20, 30))
    (tmp_path / "b.png").write_bytes(b"not an image")
    paths = [str(tmp_path / "b.png"), str(tmp_path / "a.png")]
    with caplog.at_level(logging.WARNING, logger="sniper.inputs"):
        read = list(read_images(paths, "RGB"))
    assert [p for p, _ in read] == [str(tmp_path / "a.png")] and "b.png" in caplog.text
    assert read[0][1].shape == (20, 30, 3) and read[0][1].dtype == np.uint8
    used: set[str] = set()
    names = [unique_output_name(p, used) for p in ("x/a.png", "y/a.png", "a.png", "b.png")]
    assert names == ["a.png", "a_1.png", "a_2.png", "b.png"]
