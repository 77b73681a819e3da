"""``python -m autofocus.predict``: per-image json and GeoJSON, resuming, progress per scale,
unreadable inputs; with the fake model of conftest (red = blue channel in BGR order marks
FocusPixels, green components are detections)."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

import autofocus.predict as predict_cli
from autofocus.cascade import AutoFocusCascade
from autofocus.params import CascadeParams
from autofocus.predictor import AutoFocusPredictor

tifffile = pytest.importorskip("tifffile")

GEO_BOXES = [[600.0, 600.0, 700.0, 700.0], [400.0, 272.0, 430.0, 304.0]]
OPTS = [
    "AUTOFOCUS.SCALES", "[[512, 512], 1.0, 2.0]",
    "AUTOFOCUS.VALID_RANGES", "[[75, -1], [32, 180], [-1, 75]]",
    "AUTOFOCUS.THRESHOLDS", "[0.5, 0.5]",
    "AUTOFOCUS.DILATIONS", "[1, 1]",
    "AUTOFOCUS.MIN_SIZES", "[4, 4]",
    "INPUT.FORMAT", "BGR",
    "MODEL.META_ARCHITECTURE", "AutoFocusRCNN",
]  # fmt: skip


def _scene(focus=(384, 256, 448, 320), green=((400, 272, 430, 304), (600, 600, 700, 700))):
    image = np.zeros((1024, 1024, 3), np.uint8)  # RGB
    x1, y1, x2, y2 = focus
    image[y1:y2, x1:x2, 2] = 255  # blue: channel 0 of the BGR engine, the focus marker
    for x1, y1, x2, y2 in green:
        image[y1:y2, x1:x2, 1] = 255
    return image


@pytest.fixture()
def fake_predictor(monkeypatch, fake_model):
    models = []

    class Fake(AutoFocusPredictor):
        def build_model(self, cfg):
            models.append(fake_model())
            return models[-1]

    monkeypatch.setattr(predict_cli, "AutoFocusPredictor", Fake)
    return models


def _inputs(folder):
    folder.mkdir()
    tags = [
        (33550, "d", 3, (0.5, 0.5, 0.0), True),
        (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0), True),
        (34735, "H", 8, [1, 1, 0, 1, 3072, 0, 1, 32633], True),
    ]
    tifffile.imwrite(
        folder / "geo.tif", _scene(), tile=(256, 256), photometric="rgb", extratags=tags
    )
    plain = _scene(focus=(0, 0, 0, 0), green=((100, 100, 200, 200),))
    cv2.imwrite(str(folder / "plain.png"), plain[:, :, ::-1])
    (folder / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    (folder / "notes.txt").write_text("not an image")


def _run(folder, out, *extra):
    argv = ["--config-file", "", "--input", str(folder), "--output", str(out), *OPTS, *extra]
    return predict_cli.main(argv)


def test_folder_outputs_geojson_and_resume(tmp_path, fake_predictor, caplog):
    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert _run(tmp_path / "in", out) == 0
    assert sorted(os.listdir(out)) == ["geo.geojson", "geo.json", "plain.json", "results.json"]
    geo = json.loads((out / "geo.json").read_text())
    assert [d["bbox"] for d in geo["detections"]] == [
        [x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in GEO_BOXES
    ]
    assert geo["pixels_per_scale"] == [512 * 512, 128 * 128, 128 * 128]
    assert geo["chips_per_scale"][2] == [[384.0, 256.0, 448.0, 320.0]]
    assert (geo["height"], geo["width"]) == (1024, 1024)
    plain = json.loads((out / "plain.json").read_text())
    assert [d["bbox"] for d in plain["detections"]] == [[100.0, 100.0, 100.0, 100.0]]
    assert plain["pixels_per_scale"] == [512 * 512, 0, 0]  # no FocusPixel: stops at once
    collection = json.loads((out / "geo.geojson").read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    ring = collection["features"][0]["geometry"]["coordinates"][0]
    # x = 0.5 col + 500000, y = -0.5 row + 4000000
    assert ring[0] == [500300.0, 3999700.0] and ring[2] == [500350.0, 3999650.0]
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 3 and {r["image_id"] for r in rows} == {"geo", "plain"}
    assert "broken.tif" in caplog.text and "notes.txt" not in caplog.text

    # the same command again: nothing is recomputed, results.json is the same
    stamps = {n: os.stat(out / n).st_mtime_ns for n in ("geo.json", "plain.json")}
    calls = len(fake_predictor[-1].calls)
    assert _run(tmp_path / "in", out) == 0
    assert len(fake_predictor[-1].calls) == 0 and calls > 0
    assert {n: os.stat(out / n).st_mtime_ns for n in stamps} == stamps
    assert json.loads((out / "results.json").read_text()) == rows
    # another config redoes the images; --overwrite too
    assert _run(tmp_path / "in", out, "AUTOFOCUS.BORDER_DELTA", "12") == 0
    assert json.loads((out / "results.json").read_text()) == rows
    assert len(fake_predictor[-1].calls) > 0
    assert os.stat(out / "geo.json").st_mtime_ns != stamps["geo.json"]
    assert _run(tmp_path / "in", out, "--overwrite") == 0
    assert (
        len(fake_predictor[-1].calls) > 0
        and len(json.loads((out / "results.json").read_text())) == 3
    )


def test_a_half_written_json_is_redone(tmp_path, fake_predictor):
    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "geo.json").write_text('{"config_sha256": ')  # a crash mid-write (not ours)
    assert _run(tmp_path / "in", out) == 0
    assert len(json.loads((out / "geo.json").read_text())["detections"]) == 2


def test_no_readable_input_is_one_error_line(tmp_path, fake_predictor, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    with pytest.raises(SystemExit) as exit_info:
        _run(folder, tmp_path / "out")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1].startswith("error: none of the 1 inputs could be read") and "broken.tif" in err[-1]
    )


def test_progress_hooks_see_every_scale_and_batch(fake_model):
    params = CascadeParams(
        scales=([512, 512], 1.0, 2.0),
        valid_ranges=([75, -1], [32, 180], [-1, 75]),
        thresholds=(0.5, 0.5),
        dilations=(1, 1),
        min_sizes=(4, 4),
    )
    cascade = AutoFocusCascade(fake_model(), params, max_pixels_per_batch=300_000)
    seen = []
    cascade.progress_hooks.append(lambda *a: seen.append(a))
    image = np.ascontiguousarray(_scene()[:, :, ::-1])  # channel 0 = blue, the focus marker
    cascade([image, image])
    # scale 0: two 512 px canvases, one per batch (budget); then one chip per image, batched
    assert seen == [
        (0, 3, 0, 2), (0, 3, 1, 2), (0, 3, 2, 2),
        (1, 3, 0, 2), (1, 3, 2, 2),
        (2, 3, 0, 2), (2, 3, 2, 2),
    ]  # fmt: skip
    assert cascade._progress is None
