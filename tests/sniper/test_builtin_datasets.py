"""Built-in datasets under $SNIPER_DATASETS (detectron2 names and layouts), the missing-data
message, DATASETS.REGISTER_COCO / --register-coco, and every shipped config resolving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from engine_fakes import SLIM_MODEL_OPTS
from PIL import Image

from autofocus.config import setup_cfg as autofocus_setup_cfg
from sniper.config import setup_cfg
from sniper.data import builtin
from sniper.data.builtin import DatasetNotFoundError, register_all_builtin
from sniper.data.catalog import DatasetCatalog, MetadataCatalog
from sniper.data.coco import register_coco_instances
from sniper.data.registration import (
    build_dataset_catalog,
    check_datasets,
    register_coco_entries,
)
from sniper.data.synthetic import SYNTHETIC_SPLITS
from sniper.register_args import register_coco_opts

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if not p.name.startswith("Base-"))
TRAIN_NET = ROOT / "projects" / "sniper" / "train_net.py"
USER_NAMES = ("mine_train", "mine_val")
# A 4-iteration run on whole 40x30 images at 1.0x (one 64 px chip each).
TINY_RUN_OPTS = [
    *("SNIPER.TRAIN_SCALES", "[1.0]", "SNIPER.VALID_RANGES", "[[-1, -1]]"),
    *("SNIPER.NEG_MIN_PROPOSALS", "[1]", "SNIPER.CHIP_SIZE", "64", "SNIPER.CHIP_STRIDE", "32"),
    *("SNIPER.TEST_SCALES", "[1.0]", "SNIPER.TEST_VALID_RANGES", "[[-1, -1]]"),
    *("DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "1", "SOLVER.MAX_ITER", "4"),
    *("SOLVER.STEPS", "(3,)", "SOLVER.WARMUP_ITERS", "1", "SOLVER.CHECKPOINT_PERIOD", "4"),
    *("SOLVER.AMP.ENABLED", "False", "MODEL.BACKBONE.WEIGHTS", "''"),
]


def _clear() -> None:
    for name in [*builtin.builtin_dataset_names(), *USER_NAMES, *SYNTHETIC_SPLITS]:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture(autouse=True)
def clean_catalog():
    """No built-in (synthetic included) or user dataset of this file registered before or
    after a test."""
    _clear()
    yield
    _clear()


def _image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 100, np.uint8)).save(path)


def _coco_json(path: Path, file_name: str, bbox: list[float] | None) -> None:
    """One 40x30 image (id 7) with one box of category 3 ("cat"); bbox None = image-info
    file without an ``annotations`` key (COCO test splits)."""
    data = {
        "images": [{"id": 7, "file_name": file_name, "height": 30, "width": 40}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "ant"}],
    }
    if bbox is not None:
        data["annotations"] = [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 3,
                "bbox": bbox,
                "iscrowd": 0,
                "area": bbox[2] * bbox[3],
            }
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def make_fake_root(root: Path) -> Path:
    """A $SNIPER_DATASETS with every built-in in the official layout, one image each."""
    for name, (images, json_file) in builtin.BUILTIN_COCO.items():
        _image(root / images / f"{name}.jpg", 40, 30)
        bbox = None if name in ("coco_2017_test", "coco_2017_test-dev") else [1, 2, 3, 4]
        _coco_json(root / json_file, f"{name}.jpg", bbox)
    for folder, split in builtin.BUILTIN_VOC.values():
        voc = root / folder
        _image(voc / "JPEGImages" / "000001.jpg", 40, 30)
        (voc / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("000001\n")
        (voc / "Annotations").mkdir(parents=True, exist_ok=True)
        (voc / "Annotations" / "000001.xml").write_text(
            "<annotation><size><width>40</width><height>30</height></size><object>"
            "<name>dog</name><difficult>0</difficult><bndbox><xmin>2</xmin><ymin>3</ymin>"
            "<xmax>12</xmax><ymax>13</ymax></bndbox></object></annotation>"
        )
    for folder in builtin.BUILTIN_VISDRONE.values():
        _image(root / folder / "images" / "0000001_00000_d_0000001.jpg", 40, 30)
        (root / folder / "annotations").mkdir(parents=True, exist_ok=True)
        (root / folder / "annotations" / "0000001_00000_d_0000001.txt").write_text(
            "5,6,10,8,1,4,0,0\n0,0,4,4,0,0,0,0\n"
        )
    return root


def test_coco_builtin_records_and_metadata(tmp_path):
    root = make_fake_root(tmp_path / "ds")
    registered = register_all_builtin(root)
    assert registered == builtin.builtin_dataset_names()
    meta = MetadataCatalog.get("coco_2017_train")
    assert meta.evaluator_type == "coco"
    assert meta.json_file == str(root / "coco/annotations/instances_train2017.json")
    assert meta.image_root == str(root / "coco/train2017")
    (rec,) = DatasetCatalog.get("coco_2017_train")
    assert rec["file_name"] == str(root / "coco/train2017/coco_2017_train.jpg")
    assert (rec["image_id"], rec["height"], rec["width"]) == (7, 30, 40)
    np.testing.assert_array_equal(rec["boxes"], np.array([[1, 2, 4, 6]], np.float32))
    np.testing.assert_array_equal(rec["classes"], [1])  # category 3 is the 2nd sorted id
    assert meta.thing_classes == ["ant", "cat"]
    # minival shares the val2014 images with its own json
    (mini,) = DatasetCatalog.get("coco_2014_minival")
    assert mini["file_name"] == str(root / "coco/val2014/coco_2014_minival.jpg")


def test_coco_test_dev_has_no_annotations(tmp_path):
    root = make_fake_root(tmp_path / "ds")
    register_all_builtin(root)
    (rec,) = DatasetCatalog.get("coco_2017_test-dev")
    assert rec["file_name"] == str(root / "coco/test2017/coco_2017_test-dev.jpg")
    assert rec["boxes"].shape == (0, 4) and rec["crowd_boxes"].shape == (0, 4)


def test_visdrone_converted_once_then_cached(tmp_path):
    root = make_fake_root(tmp_path / "ds")
    register_all_builtin(root)
    cache = root / "visdrone" / "annotations" / "visdrone_2019_val.json"
    assert MetadataCatalog.get("visdrone_2019_val").json_file == str(cache)
    assert not cache.exists()
    (rec,) = DatasetCatalog.get("visdrone_2019_val")
    folder = root / "visdrone" / "VisDrone2019-DET-val" / "images"
    assert rec["file_name"] == str(folder / "0000001_00000_d_0000001.jpg")
    np.testing.assert_array_equal(rec["boxes"], np.array([[5, 6, 15, 14]], np.float32))
    np.testing.assert_array_equal(rec["classes"], [3])  # car = VisDrone category 4
    # the ignored region (category 0) is a crowd box of every one of the 10 classes
    np.testing.assert_array_equal(rec["crowd_boxes"], np.tile([[0, 0, 4, 4]], (10, 1)))
    assert MetadataCatalog.get("visdrone_2019_val").thing_classes[3] == "car"
    # cached: a second load does not convert again ...
    os.utime(cache, ns=(4_000_000_000_000_000_000,) * 2)
    DatasetCatalog.get("visdrone_2019_val")
    assert cache.stat().st_mtime_ns == 4_000_000_000_000_000_000
    # ... until an annotation file is newer than the cache
    txt = root / "visdrone/VisDrone2019-DET-val/annotations/0000001_00000_d_0000001.txt"
    txt.write_text("5,6,10,8,1,9,0,0\n")
    os.utime(txt, ns=(5_000_000_000_000_000_000,) * 2)
    (rec,) = DatasetCatalog.get("visdrone_2019_val")
    np.testing.assert_array_equal(rec["classes"], [8])  # bus
    assert rec["crowd_boxes"].shape == (0, 4)
    assert not [p for p in cache.parent.iterdir() if p.name.endswith(".tmp")]


def test_missing_data_is_one_line_naming_dataset_path_layout_and_env(tmp_path, monkeypatch):
    root = tmp_path / "empty"
    monkeypatch.setenv("SNIPER_DATASETS", str(root))
    register_all_builtin()
    with pytest.raises(DatasetNotFoundError) as err:
        DatasetCatalog.get("coco_2017_train")
    assert str(err.value) == (
        f"dataset 'coco_2017_train': {root}/coco/annotations/instances_train2017.json not "
        "found; expected coco/annotations/instances_train2017.json and the images in "
        f"coco/train2017/ under {root}; set $SNIPER_DATASETS to the folder that holds them "
        f"($SNIPER_DATASETS is {root})"
    )
    monkeypatch.delenv("SNIPER_DATASETS")
    register_all_builtin(root)
    with pytest.raises(DatasetNotFoundError) as err:
        check_datasets(["visdrone_2019_test-dev"], "DATASETS.TEST")
    assert str(err.value) == (
        f"dataset 'visdrone_2019_test-dev': {root}/visdrone/VisDrone2019-DET-test-dev/images "
        "not found; expected visdrone/VisDrone2019-DET-test-dev/{images/*.jpg, "
        "annotations/*.txt} (the official VisDrone-DET zip) "
        f"under {root}; set $SNIPER_DATASETS to the folder that holds them "
        "($SNIPER_DATASETS is unset)"
    )
    # the json alone is not enough: the image folder is checked too
    _coco_json(root / "coco/annotations/instances_val2017.json", "a.jpg", [1, 2, 3, 4])
    with pytest.raises(DatasetNotFoundError, match=f"'coco_2017_val': {root}/coco/val2017 not"):
        DatasetCatalog.get("coco_2017_val")


def test_new_root_repoints_builtins_and_user_registration_wins(tmp_path):
    register_all_builtin(tmp_path / "a")
    assert MetadataCatalog.get("coco_2017_val").image_root == str(tmp_path / "a/coco/val2017")
    register_all_builtin(tmp_path / "a")  # same root: no-op
    register_all_builtin(tmp_path / "b")
    assert MetadataCatalog.get("coco_2017_val").image_root == str(tmp_path / "b/coco/val2017")
    DatasetCatalog.remove("coco_2017_val")
    MetadataCatalog.remove("coco_2017_val")
    register_coco_instances("coco_2017_val", str(tmp_path / "x.json"), str(tmp_path / "im"))
    assert "coco_2017_val" not in register_all_builtin(tmp_path / "c")
    assert MetadataCatalog.get("coco_2017_val").image_root == str(tmp_path / "im")


def _user_data(tmp_path: Path) -> tuple[str, str]:
    _image(tmp_path / "user" / "images" / "u.jpg", 40, 30)
    _coco_json(tmp_path / "user" / "train.json", "u.jpg", [0, 0, 10, 10])
    return str(tmp_path / "user" / "train.json"), str(tmp_path / "user" / "images")


def test_register_coco_entries(tmp_path, monkeypatch):
    json_file, images = _user_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    entry = ["mine_train", "user/train.json", "user/images"]  # relative to the cwd
    assert register_coco_entries([entry]) == ["mine_train"]
    assert register_coco_entries([entry]) == ["mine_train"]  # idempotent
    meta = MetadataCatalog.get("mine_train")
    assert (meta.json_file, meta.image_root, meta.evaluator_type) == (json_file, images, "coco")
    (rec,) = DatasetCatalog.get("mine_train")
    assert rec["file_name"] == os.path.join(images, "u.jpg")
    with pytest.raises(ValueError, match="'mine_train' is already registered with json"):
        register_coco_entries([["mine_train", "other.json", "user/images"]])
    with pytest.raises(ValueError, match="'coco_2017_val' is a built-in dataset name"):
        register_coco_entries([["coco_2017_val", "user/train.json", "user/images"]])
    with pytest.raises(ValueError, match="'synthetic_digits_val' is a built-in"):
        register_coco_entries([["synthetic_digits_val", "user/train.json", "user/images"]])
    with pytest.raises(ValueError, match=r"entry \['a', 'b'\] must be \[name, json_file"):
        register_coco_entries([["a", "b"]])
    check_datasets(["mine_train"], "DATASETS.TRAIN")
    register_coco_entries([["mine_val", "nope.json", "user/images"]])
    with pytest.raises(FileNotFoundError) as err:
        check_datasets(["mine_val"], "DATASETS.TEST")
    assert str(err.value) == (
        "dataset 'mine_val' (DATASETS.REGISTER_COCO / --register-coco): no json file "
        f"{tmp_path / 'nope.json'}"
    )
    with pytest.raises(KeyError, match=r"dataset 'nothing' \(DATASETS.TEST\) is not regis"):
        check_datasets(["nothing"], "DATASETS.TEST")


def test_register_coco_opts_appends_to_the_config(tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("DATASETS:\n  REGISTER_COCO: [[mine_train, t.json, im]]\n")
    assert register_coco_opts(str(yaml), ["SEED", "3"], [], setup_cfg) == ["SEED", "3"]
    opts = register_coco_opts(str(yaml), ["SEED", "3"], [["mine_val", "v.json", "im"]], setup_cfg)
    assert opts == [
        "SEED",
        "3",
        "DATASETS.REGISTER_COCO",
        "[['mine_train', 't.json', 'im'], ['mine_val', 'v.json', 'im']]",
    ]
    cfg = setup_cfg(str(yaml), opts)
    assert cfg.DATASETS.REGISTER_COCO == [
        ["mine_train", "t.json", "im"],
        ["mine_val", "v.json", "im"],
    ]
    with pytest.raises(ValueError, match="dataset 'mine_train' is given twice"):
        setup_cfg(
            str(yaml),
            ["DATASETS.REGISTER_COCO", "[['mine_train', 'a', 'b'], ['mine_train', 'c', 'd']]"],
        )


def _config(path: Path):
    load = autofocus_setup_cfg if path.parent.name == "autofocus" else setup_cfg
    return load(str(path), [])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_resolves_with_the_data_in_place(path, tmp_path, monkeypatch):
    """Every DATASETS.TRAIN/TEST name of every config resolves to records of the fake root
    (the synthetic splits, generated on first use and tested in test_synthetic.py, are only
    checked to be registered)."""
    monkeypatch.setenv("SNIPER_DATASETS", str(make_fake_root(tmp_path / "ds")))
    cfg = _config(path)
    build_dataset_catalog(cfg)
    names = [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]
    assert names
    for name in names:
        if name in SYNTHETIC_SPLITS:
            assert name in DatasetCatalog.list()
            continue
        records = DatasetCatalog.get(name)
        assert [os.path.basename(r["file_name"]) for r in records] in (
            [f"{name}.jpg"],
            ["0000001_00000_d_0000001.jpg"],
        )


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_without_data_says_what_to_put_where(path, tmp_path, monkeypatch):
    monkeypatch.setenv("SNIPER_DATASETS", str(tmp_path / "empty"))
    cfg = _config(path)
    real = [n for n in [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST] if n not in SYNTHETIC_SPLITS]
    if not real:
        build_dataset_catalog(cfg)  # synthetic data is generated, nothing to put in place
        return
    with pytest.raises(DatasetNotFoundError, match=f"^dataset '{real[0]}': {tmp_path}/empty/"):
        build_dataset_catalog(cfg)


def test_voc_registration(tmp_path):
    voc = pytest.importorskip("sniper.data.voc")
    root = make_fake_root(tmp_path / "ds")
    register_all_builtin(root)
    meta = MetadataCatalog.get("voc_2007_test")
    assert (meta.evaluator_type, meta.year, meta.split) == ("pascal_voc", 2007, "test")
    assert meta.dirname == str(root / "VOC2007")
    assert meta.thing_classes == list(voc.VOC_CLASS_NAMES)
    assert MetadataCatalog.get("voc_2012_trainval").year == 2012
    (rec,) = DatasetCatalog.get("voc_2012_trainval")
    assert rec["file_name"] == str(root / "VOC2012" / "JPEGImages" / "000001.jpg")


def _run_train_net(args: list[str], env_root: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SNIPER_DATASETS=str(env_root), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(TRAIN_NET), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )


@pytest.mark.slow
def test_train_net_without_data_prints_one_line_and_exits_2(tmp_path):
    proc = _run_train_net(
        ["--config-file", str(ROOT / "configs/sniper/coco_R50_FPN.yaml")],
        tmp_path / "empty",
        tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: dataset 'coco_2017_train': {tmp_path}/empty/coco/annotations/"
        "instances_train2017.json not found; expected coco/annotations/instances_train2017"
        f".json and the images in coco/train2017/ under {tmp_path}/empty; set "
        "$SNIPER_DATASETS to the folder that holds them "
        f"($SNIPER_DATASETS is {tmp_path}/empty)"
    ]
    assert not (tmp_path / "output").exists()


@pytest.mark.slow
def test_train_net_trains_and_evaluates_a_user_coco_json_from_the_command_line(tmp_path):
    """The README recipe: --register-coco twice, names in DATASETS.TRAIN/TEST, nothing else."""
    json_file, images = _user_data(tmp_path)
    out = tmp_path / "run"
    proc = _run_train_net(
        [
            "--register-coco", "mine_train", json_file, images,
            "--register-coco", "mine_val", json_file, images,
            *SLIM_MODEL_OPTS, "MODEL.NUM_CLASSES", "2", *TINY_RUN_OPTS,
            "DATASETS.TRAIN", "('mine_train',)", "DATASETS.TEST", "('mine_val',)",
            "OUTPUT_DIR", str(out),
        ],
        tmp_path / "empty",
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    saved = setup_cfg(str(out / "config.yaml"), [])
    assert saved.DATASETS.REGISTER_COCO == [
        ["mine_train", json_file, images],
        ["mine_val", json_file, images],
    ]
    last = json.loads((out / "metrics.json").read_text().splitlines()[-1])
    assert "mine_val/bbox/AP" in last and last["mine_val/speed/images"] == 1
