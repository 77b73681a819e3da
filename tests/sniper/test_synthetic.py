"""Tests of the built-in synthetic multi-scale digits dataset (sniper.data.synthetic*)."""

from __future__ import annotations

import json
import os
import time

import cv2
import numpy as np
import pytest

from sniper.data import synthetic
from sniper.data.synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_SPLITS,
    SyntheticSplit,
    build_split,
    default_cache_root,
    register_synthetic_datasets,
    render_image,
    render_seed,
)
from sniper.data.synthetic_glyphs import ALPHA_THRESHOLD, FONT_FILES, glyph_alpha
from sniper.data.synthetic_render import GAP, render_scene

SEEDS = (11, 22, 33)


def _sizes(boxes: np.ndarray) -> np.ndarray:
    return np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


@pytest.fixture(scope="module")
def rendered() -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    render_image(0, 1024)  # warm the glyph and background caches before timing
    out, times = {}, []
    for seed in SEEDS:
        t0 = time.perf_counter()
        out[seed] = render_image(seed, 1024)
        times.append(time.perf_counter() - t0)
    print(f"\nsynthetic: {np.mean(times) * 1000:.0f} ms per 1024x1024 image (warm caches)")
    return out


def test_classes_and_splits() -> None:
    assert SYNTHETIC_CLASSES == tuple(str(d) for d in range(10))
    assert SYNTHETIC_SPLITS["synthetic_digits_train"].canvas == 1024
    assert SYNTHETIC_SPLITS["synthetic_digits_val"].canvas == 1024
    assert SYNTHETIC_SPLITS["synthetic_digits_test2048"].canvas == 2048
    assert SYNTHETIC_SPLITS["synthetic_digits_mini"].num_images == 8
    seeds = {render_seed(s.seed, i) for s in SYNTHETIC_SPLITS.values() for i in range(s.num_images)}
    assert len(seeds) == sum(s.num_images for s in SYNTHETIC_SPLITS.values())
    assert render_seed(5, 3) == render_seed(5, 3)


def test_default_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("SNIPER_DATASETS", str(tmp_path))
    assert default_cache_root() == str(tmp_path)
    monkeypatch.delenv("SNIPER_DATASETS")
    assert default_cache_root() == os.path.expanduser("~/.cache/sniper/datasets")


def test_determinism(rendered) -> None:
    image, boxes, classes = rendered[SEEDS[0]]
    again = render_image(SEEDS[0], 1024)
    np.testing.assert_array_equal(image, again[0])
    np.testing.assert_array_equal(boxes, again[1])
    np.testing.assert_array_equal(classes, again[2])
    other = rendered[SEEDS[1]]
    assert not np.array_equal(image, other[0])
    assert boxes.shape != other[1].shape or not np.array_equal(boxes, other[1])


def test_output_types_and_bounds(rendered) -> None:
    for image, boxes, classes in rendered.values():
        assert image.dtype == np.uint8 and image.shape == (1024, 1024, 3)
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
        assert classes.dtype == np.int64 and classes.shape == (len(boxes),)
        assert classes.min() >= 0 and classes.max() <= 9
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 1024).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert image.std() > 10.0  # textured, not flat


def test_counts_and_size_distribution(rendered) -> None:
    for _, boxes, _ in rendered.values():
        sizes = _sizes(boxes)
        small, large = sizes[sizes < 32], sizes[sizes >= 32]
        assert 2 <= len(large) <= 6
        assert 8 <= len(small) <= 90
        assert small.min() >= 4.5 and small.max() <= 29.0
        assert large.min() >= 31.0 and large.max() <= 386.0
    all_sizes = np.concatenate([_sizes(b) for _, b, _ in rendered.values()])
    assert (all_sizes < 28).any() and (all_sizes > 64).any()


def test_small_objects_are_clustered(rendered) -> None:
    for _, boxes, _ in rendered.values():
        occupied = np.zeros((16, 16), dtype=bool)  # 64x64 cells of a 1024 canvas
        for x1, y1, x2, y2 in boxes[_sizes(boxes) < 32].astype(int):
            occupied[y1 // 64 : (y2 - 1) // 64 + 1, x1 // 64 : (x2 - 1) // 64 + 1] = True
        assert occupied.mean() < 0.25


def test_no_overlap(rendered) -> None:
    for _, boxes, _ in rendered.values():
        b = boxes.astype(np.int64)
        iw = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        ih = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
        touching = (iw > -GAP) & (ih > -GAP)
        np.fill_diagonal(touching, False)
        assert not touching.any()


def test_boxes_tight_on_flat_background(rendered) -> None:
    grey = 128
    for seed, (_, boxes, classes) in rendered.items():
        image, flat_boxes, flat_classes = render_scene(seed, 1024, flat_background=grey)
        np.testing.assert_array_equal(boxes, flat_boxes)  # layout is background-independent
        np.testing.assert_array_equal(classes, flat_classes)
        ink = (image != grey).any(axis=2)
        for x1, y1, x2, y2 in boxes.astype(int):
            inside = ink[y1:y2, x1:x2]
            assert inside[0].any() and inside[-1].any()
            assert inside[:, 0].any() and inside[:, -1].any()
            top, left = max(y1 - 1, 0), max(x1 - 1, 0)
            ring = ink[top : y2 + 1, left : x2 + 1].copy()  # box grown by 1 px
            ring[y1 - top : y2 - top, x1 - left : x2 - left] = False
            assert not ring.any()  # nothing drawn just outside the box


def test_glyph_alpha_is_tight() -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        size = float(np.exp(rng.uniform(np.log(6), np.log(384))))
        char = "0123456789AKxw"[rng.integers(14)]
        angle = float(rng.uniform(-25, 25)) if rng.random() < 0.5 else 0.0
        blur = 0.8 if rng.random() < 0.2 else 0.0
        alpha = glyph_alpha(int(rng.integers(len(FONT_FILES))), char, size, angle, blur)
        assert alpha.dtype == np.float32
        assert alpha[0].any() and alpha[-1].any() and alpha[:, 0].any() and alpha[:, -1].any()
        nonzero = alpha[alpha > 0]
        assert nonzero.min() >= ALPHA_THRESHOLD and nonzero.max() <= 1.0
        assert abs(np.sqrt(alpha.size) - size) <= 1.5


def test_canvas_2048() -> None:
    image, boxes, classes = render_image(7, 2048)
    assert image.shape == (2048, 2048, 3)
    assert (boxes[:, 2:] <= 2048).all() and len(boxes) == len(classes) >= 10


# ----------------------------------------------------------------------------- build_split

TINY = SyntheticSplit("synthetic_test_tiny", num_images=3, canvas=512, seed=77)


def _leftovers(folder) -> list[str]:
    return [f for _, _, files in os.walk(folder) for f in files if ".tmp" in f]


def test_build_split_writes_valid_coco(tmp_path) -> None:
    from pycocotools.coco import COCO

    json_file, image_root = build_split(TINY, tmp_path)
    assert json_file == str(tmp_path / TINY.name / "instances.json")
    assert image_root == str(tmp_path / TINY.name / "images")
    coco = COCO(json_file)
    assert sorted(coco.getImgIds()) == [1, 2, 3]
    assert [c["name"] for c in coco.loadCats(sorted(coco.getCatIds()))] == list(SYNTHETIC_CLASSES)
    ann_ids = [a["id"] for a in coco.dataset["annotations"]]
    assert ann_ids == list(range(1, len(ann_ids) + 1))
    for index in range(TINY.num_images):
        info = coco.loadImgs(index + 1)[0]
        assert info["file_name"] == f"{index:06d}.jpg"
        assert (info["height"], info["width"]) == (512, 512)
        image, boxes, classes = render_image(render_seed(TINY.seed, index), TINY.canvas)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=index + 1))
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        np.testing.assert_array_equal(xywh[:, :2], boxes[:, :2])
        np.testing.assert_array_equal(xywh[:, :2] + xywh[:, 2:], boxes[:, 2:])
        np.testing.assert_array_equal([a["category_id"] - 1 for a in anns], classes)
        assert all(a["iscrowd"] == 0 and a["area"] == a["bbox"][2] * a["bbox"][3] for a in anns)
        decoded = cv2.imread(os.path.join(image_root, info["file_name"]))[:, :, ::-1]
        assert decoded.shape == image.shape
        assert np.abs(decoded.astype(np.int16) - image).mean() < 3.0  # JPEG quality 95
    assert not _leftovers(tmp_path)


def test_build_split_idempotent(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    json_file, image_root = build_split(TINY, tmp_path)
    mtime = os.stat(json_file).st_mtime_ns

    def fail(seed: int, canvas: int):
        raise AssertionError("a complete cache must not be regenerated")

    monkeypatch.setattr(synthetic, "render_instances", fail)
    assert build_split(TINY, tmp_path) == (json_file, image_root)
    assert os.stat(json_file).st_mtime_ns == mtime


def test_build_split_atomic_and_rebuilds(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = synthetic.render_instances

    def crash_on_third(seed: int, canvas: int):
        calls.append(seed)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real(seed, canvas)

    monkeypatch.setattr(synthetic, "render_instances", crash_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_split(TINY, tmp_path)
    json_file = tmp_path / TINY.name / "instances.json"
    assert not json_file.exists()  # incomplete: no json
    assert not _leftovers(tmp_path)
    monkeypatch.setattr(synthetic, "render_instances", real)
    build_split(TINY, tmp_path)
    assert json_file.exists()
    # a missing image or a changed split definition invalidates the cache
    os.remove(tmp_path / TINY.name / "images" / "000001.jpg")
    build_split(TINY, tmp_path)
    assert (tmp_path / TINY.name / "images" / "000001.jpg").exists()
    bigger = SyntheticSplit(TINY.name, num_images=4, canvas=TINY.canvas, seed=TINY.seed)
    build_split(bigger, tmp_path)
    assert len(json.loads(json_file.read_text())["images"]) == 4


def test_build_split_with_workers_matches_serial(tmp_path) -> None:
    serial, _ = build_split(TINY, tmp_path / "serial", num_workers=0)
    parallel, image_root = build_split(TINY, tmp_path / "parallel", num_workers=2)
    with open(serial) as f_a, open(parallel) as f_b:
        assert json.load(f_a) == json.load(f_b)
    for index in range(TINY.num_images):
        name = f"{index:06d}.jpg"
        serial_bytes = (tmp_path / "serial" / TINY.name / "images" / name).read_bytes()
        assert serial_bytes == (tmp_path / "parallel" / TINY.name / "images" / name).read_bytes()


# ------------------------------------------------------------------------------ registration


@pytest.fixture
def clean_catalog():
    from sniper.data.catalog import DatasetCatalog, MetadataCatalog

    def clear() -> None:
        for name in SYNTHETIC_SPLITS:
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)

    clear()
    yield DatasetCatalog, MetadataCatalog
    clear()


def test_register_synthetic_datasets(tmp_path, clean_catalog) -> None:
    dataset_catalog, metadata_catalog = clean_catalog
    names = register_synthetic_datasets(tmp_path)
    assert names == list(SYNTHETIC_SPLITS)
    assert set(names) <= set(dataset_catalog.list())
    assert not any((tmp_path / name).exists() for name in names)  # lazy: nothing generated
    meta = metadata_catalog.get("synthetic_digits_mini")
    assert meta.thing_classes == list(SYNTHETIC_CLASSES)
    assert meta.evaluator_type == "coco"
    assert register_synthetic_datasets(tmp_path) == names  # same root: no-op
    with pytest.raises(ValueError, match="already registered"):
        register_synthetic_datasets(tmp_path / "elsewhere")

    records = dataset_catalog.get("synthetic_digits_mini")
    assert len(records) == 8
    assert meta.json_file == str(tmp_path / "synthetic_digits_mini" / "instances.json")
    first = records[0]
    _, boxes, classes = render_image(
        render_seed(SYNTHETIC_SPLITS["synthetic_digits_mini"].seed, 0), 1024
    )
    assert os.path.isfile(first["file_name"])
    np.testing.assert_array_equal(first["boxes"], boxes)
    np.testing.assert_array_equal(first["classes"], classes)
