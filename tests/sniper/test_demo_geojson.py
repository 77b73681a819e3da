"""``sniper.demo`` writes a GeoTIFF's detections as GeoJSON in its CRS beside results.json."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch
from demo_fakes import TINY

from sniper import demo

tifffile = pytest.importorskip("tifffile")


def test_demo_writes_geojson_for_georeferenced_inputs_only(tmp_path, clean_synthetic):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    tags = [
        (33550, "d", 3, (2.0, 3.0, 0.0), True),
        (33922, "d", 6, (0.0, 0.0, 0.0, 1000.0, 9000.0, 0.0), True),
        (34735, "H", 8, [1, 1, 0, 1, 3072, 0, 1, 32631], True),
    ]
    tifffile.imwrite(folder / "scene.tif", image, photometric="rgb", extratags=tags)
    cv2.imwrite(str(folder / "photo.png"), image)
    out = tmp_path / "out"
    try:
        status = demo.main(["--input", str(folder), "--output", str(out), "--", *TINY])
    finally:
        torch.set_num_threads(threads)
    assert status == 0
    assert sorted(os.listdir(out)) == ["photo.png", "results.json", "scene.geojson", "scene.tif"]
    rows = [r for r in json.loads((out / "results.json").read_text()) if r["image_id"] == "scene"]
    collection = json.loads((out / "scene.geojson").read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32631"
    assert len(collection["features"]) == len(rows) > 0  # random weights, score threshold 0
    for row, feature in zip(rows, collection["features"], strict=True):
        x, y, w, h = row["bbox"]
        ring = feature["geometry"]["coordinates"][0]
        np.testing.assert_allclose(ring[0], [1000 + 2 * x, 9000 - 3 * y], rtol=0, atol=1e-6)
        np.testing.assert_allclose(
            ring[2], [1000 + 2 * (x + w), 9000 - 3 * (y + h)], rtol=0, atol=1e-6
        )
        assert feature["properties"]["score"] == pytest.approx(row["score"])
