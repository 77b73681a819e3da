"""Bad datasets through the command line, as a user runs it: `train_net.py` stops before
spawning with one ``error:`` line and exit status 2, and scores perfect detections of a
json with dropped boxes at AP 100 (the evaluation uses the loader's cleaned boxes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
TRAIN_NET = os.path.join(ROOT, "projects", "sniper", "train_net.py")
OPTS = [
    "MODEL.BACKBONE.NAME",
    "mobilenet_v2_fpn",
    "SNIPER.TRAIN_SCALES",
    "[1.0]",
    "SNIPER.VALID_RANGES",
    "[[-1, -1]]",
    "SNIPER.NEG_MIN_PROPOSALS",
    "[1]",
    "SNIPER.CHIP_SIZE",
    "96",
    "SNIPER.CHIP_STRIDE",
    "32",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "2",
    "SOLVER.STEPS",  # within MAX_ITER: no warning line on stderr
    "(1,)",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "100",
]
SIZES = [(100, 120), (80, 90)]
# kept boxes per image: [x1, y1, x2, y2, contiguous class]; image i is filled with gray
# level LEVELS[i] so that the test's oracle knows which image it sees
KEPT = {0: [[10, 10, 50, 50, 0], [50, 20, 80, 50, 1]], 1: [[5, 5, 55, 55, 0]]}
LEVELS = [60, 110]


def _write_dataset(root, dirty: bool = False) -> tuple[str, str]:
    """Gray PNGs and a COCO json (category ids 5, 7); ``dirty`` adds boxes the loader drops
    (outside the image, NaN, negative size) and one it clips."""
    images_dir = os.path.join(root, "images")
    os.makedirs(images_dir, exist_ok=True)
    images, anns = [], []
    for i, (h, w) in enumerate(SIZES):
        cv2.imwrite(os.path.join(images_dir, f"{i}.png"), np.full((h, w, 3), LEVELS[i], np.uint8))
        images.append({"id": 10 + i, "file_name": f"{i}.png", "height": h, "width": w})
        for x1, y1, x2, y2, c in KEPT[i]:
            bbox = [x1, y1, x2 - x1, y2 - y1]
            anns.append({"id": len(anns) + 1, "image_id": 10 + i, "category_id": 5 + 2 * c})
            anns[-1].update(bbox=bbox, area=bbox[2] * bbox[3], iscrowd=0)
    if dirty:
        for bbox in ([500, 500, 10, 10], [float("nan"), 1, 5, 5], [20, 20, -5, 10]):
            anns.append({"id": len(anns) + 1, "image_id": 10, "category_id": 5, "bbox": bbox})
        # clipped to [60, 40, 90, 60] (image 1 is 90 wide): the oracle reports it clipped
        anns.append({"id": len(anns) + 1, "image_id": 11, "category_id": 7})
        anns[-1]["bbox"] = [60, 40, 50, 20]
    cats = [{"id": 5, "name": "a"}, {"id": 7, "name": "b"}]
    json_file = os.path.join(root, "instances.json")
    with open(json_file, "w", encoding="utf-8") as f:
        f.write(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return json_file, images_dir


def _run(
    cmd: list[str], tmp_path, timeout: float = 120
) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, SNIPER_DATASETS=str(tmp_path / "datasets"), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - start


def _train_net(tmp_path, *opts: str) -> tuple[subprocess.CompletedProcess, float]:
    json_file, images_dir = _write_dataset(tmp_path / "data")
    cmd = [sys.executable, TRAIN_NET, "--register-coco", "d", json_file, images_dir]
    cmd += [*OPTS, "OUTPUT_DIR", str(tmp_path / "out"), "DATASETS.TRAIN", "('d',)"]
    return _run([*cmd, "DATASETS.TEST", "('d',)", "MODEL.NUM_CLASSES", "2", *opts], tmp_path)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


@pytest.mark.slow  # ~10 s idle, 30-40 s on a loaded machine (a fresh interpreter + torch)
@pytest.mark.parametrize("damage", ["corrupt", "resized"])
def test_no_usable_training_image_stops_at_once(tmp_path, damage):
    """Once an endless loop of warnings (every chip skipped, forever)."""
    json_file, images_dir = _write_dataset(tmp_path / "data")
    for i in range(len(SIZES)):
        path = os.path.join(images_dir, f"{i}.png")
        if damage == "corrupt":
            with open(path, "wb") as f:
                f.write(b"not an image")
        else:
            cv2.imwrite(path, np.zeros((7, 8, 3), np.uint8))
    cmd = [sys.executable, TRAIN_NET, "--register-coco", "d", json_file, images_dir, *OPTS]
    cmd += ["OUTPUT_DIR", str(tmp_path / "out"), "DATASETS.TRAIN", "('d',)"]
    proc, seconds = _run([*cmd, "DATASETS.TEST", "()", "MODEL.NUM_CLASSES", "2"], tmp_path)
    line = _error_line(proc)
    assert line.startswith("error: DATASETS.TRAIN ['d']: none of the 2 images with chips can be")
    reason = "unreadable: " if damage == "corrupt" else "image is 7x8 (HxW) but its record says"
    assert f"0.png ({reason}" in line and f"1.png ({reason}" in line
    assert seconds < 60
    assert not os.path.exists(tmp_path / "out" / "log.txt")  # stopped before any worker


@pytest.mark.slow  # as above
@pytest.mark.parametrize("num_classes", [1, 8])
def test_num_classes_mismatch_is_one_line(tmp_path, num_classes):
    proc, _ = _train_net(tmp_path, "MODEL.NUM_CLASSES", str(num_classes))
    assert _error_line(proc) == (
        f"error: MODEL.NUM_CLASSES = {num_classes} but dataset 'd' has 2 categories (a, b); "
        "set MODEL.NUM_CLASSES 2"
    )


@pytest.mark.slow  # as above
def test_no_chips_is_one_line(tmp_path):
    proc, _ = _train_net(tmp_path, "SNIPER.VALID_RANGES", "[[5000, -1]]")
    assert _error_line(proc) == (
        "error: DATASETS.TRAIN ['d'] yields no chips: none of its 2 images has a box in any "
        "scale's valid range (check SNIPER.VALID_RANGES and the data)"
    )


ORACLE = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from torch import nn
    from sniper.config import load_config_or_exit
    from sniper.engine import SniperTrainer
    from sniper.engine.defaults import launch_train_net, run_train_net

    DETS = {int(k): v for k, v in json.loads(sys.argv.pop(1)).items()}

    class Oracle(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

    class OracleTrainer(SniperTrainer):
        @classmethod
        def build_model(cls, cfg):
            return Oracle()

        @classmethod
        def build_inference(cls, cfg, model):
            def infer(images):
                out = []
                for im in images:
                    d = np.array(DETS[int(im[0, 0, 0])], np.float32).reshape(-1, 5)
                    out.append({"boxes": d[:, :4], "scores": np.linspace(0.9, 0.5, len(d)),
                                "classes": d[:, 4].astype(np.int64),
                                "pixels": im.shape[0] * im.shape[1]})
                return out
            return infer

    def main(args):
        return run_train_net(args, OracleTrainer, load_config_or_exit)

    if __name__ == "__main__":
        launch_train_net(main, load_config_or_exit)
    """
)


@pytest.mark.slow  # as above
def test_perfect_detections_score_100_despite_dropped_boxes(tmp_path):
    json_file, images_dir = _write_dataset(tmp_path / "data", dirty=True)
    script = tmp_path / "oracle_train_net.py"
    script.write_text(ORACLE)
    weights = tmp_path / "oracle.pth"
    import torch

    torch.save({"dummy": torch.zeros(1)}, weights)
    dets = {LEVELS[0]: KEPT[0], LEVELS[1]: [*KEPT[1], [60, 40, 90, 60, 1]]}
    cmd = [sys.executable, str(script), json.dumps(dets), "--eval-only"]
    cmd += ["--register-coco", "d", json_file, images_dir, *OPTS, "MODEL.NUM_CLASSES", "2"]
    cmd += ["OUTPUT_DIR", str(tmp_path / "out"), "DATASETS.TEST", "('d',)"]
    proc, _ = _run([*cmd, "MODEL.WEIGHTS", str(weights)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "metrics.json").read_text().splitlines()[-1])
    for key in ("AP", "AP50", "AP75", "AP-a", "AP-b"):
        assert record[f"d/bbox/{key}"] == pytest.approx(100.0), key
    assert record["d/speed/images"] == 2 and record["d/speed/skipped_images"] == 0
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "evaluate d: 2/2 images (100.0%)" in log  # progress reaches log.txt


def _launch_in_process(capsys, out, json_file: str, images_dir: str, *opts: str) -> str:
    """`launch_train_net` of train_net.py in this process; returns its one stderr line
    (the dataset's name shown as 'd') after asserting exit status 2."""
    import importlib.util

    from engine_fakes import restore_loggers, unregister

    spec = importlib.util.spec_from_file_location("sniper_train_net_data", TRAIN_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    name = f"tnd_{os.path.basename(os.path.dirname(out))}"
    argv = ["--register-coco", name, json_file, images_dir, *OPTS, "OUTPUT_DIR", str(out)]
    argv += ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", f"('{name}',)"]
    try:
        with restore_loggers(), pytest.raises(SystemExit) as exit_info:
            module.launch_train_net(module.main, argv=[*argv, "MODEL.NUM_CLASSES", "2", *opts])
    finally:
        unregister(name)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0].replace(name, "d")


def test_in_process_num_classes(tmp_path, capsys):
    """The fast twin of the subprocess tests: the same entry point, in this process."""
    json_file, images_dir = _write_dataset(tmp_path / "a")
    line = _launch_in_process(
        capsys, tmp_path / "a" / "out", json_file, images_dir, "MODEL.NUM_CLASSES", "8"
    )
    assert line == (
        "error: MODEL.NUM_CLASSES = 8 but dataset 'd' has 2 categories (a, b); "
        "set MODEL.NUM_CLASSES 2"
    )


def test_in_process_no_usable_image(tmp_path, capsys):
    json_file, images_dir = _write_dataset(tmp_path / "b")
    for i in range(len(SIZES)):
        with open(os.path.join(images_dir, f"{i}.png"), "wb") as f:
            f.write(b"not an image")
    line = _launch_in_process(capsys, tmp_path / "b" / "out", json_file, images_dir)
    assert line.startswith("error: DATASETS.TRAIN ['d']: none of the 2 images with chips")
    assert not os.path.exists(tmp_path / "b" / "out" / "log.txt")
