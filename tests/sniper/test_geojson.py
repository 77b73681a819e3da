"""GeoJSON of detections: corners through the geotransform, properties, CRS member, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sniper.geojson import apply_geotransform, crs_member, detections_geojson

# a north-up UTM-like transform: 0.5 m pixels, origin (500000, 4200000), y down the rows
NORTH_UP = (0.5, 0.0, 500000.0, 0.0, -0.5, 4200000.0)


def test_corners_map_by_hand() -> None:
    out = detections_geojson(
        np.array([[10.0, 20.0, 30.0, 60.0]]),
        np.array([0.9]),
        np.array([1]),
        NORTH_UP,
        "EPSG:32633",
        category_names=["car", "truck"],
        to_dataset_id={0: 3, 1: 7},
    )
    (feature,) = out["features"]
    ring = feature["geometry"]["coordinates"][0]
    # x = 0.5 col + 500000, y = -0.5 row + 4200000
    assert ring == [
        [500005.0, 4199990.0],
        [500015.0, 4199990.0],
        [500015.0, 4199970.0],
        [500005.0, 4199970.0],
        [500005.0, 4199990.0],
    ]
    assert feature["properties"] == {
        "score": pytest.approx(0.9),
        "category_id": 7,
        "category": "truck",
        "bbox": [10.0, 20.0, 30.0, 60.0],
    }
    assert out["crs"] == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
    json.dumps(out)  # plain json types only


def test_rotated_transform_and_defaults() -> None:
    # b and d non-zero: x = col + 2 row + 5, y = 3 col - row + 1
    t = (1.0, 2.0, 5.0, 3.0, -1.0, 1.0)
    pts = apply_geotransform(t, np.array([[0.0, 0.0], [4.0, 1.0]]))
    assert pts.tolist() == [[5.0, 1.0], [11.0, 12.0]]
    out = detections_geojson(np.array([[0.0, 0.0, 4.0, 1.0]]), [0.5], [4], t, None)
    assert "crs" not in out
    props = out["features"][0]["properties"]
    assert (props["category_id"], props["category"]) == (5, "class 4")
    assert out["features"][0]["geometry"]["coordinates"][0][2] == [11.0, 12.0]


def test_rasterio_affine_agrees() -> None:
    rasterio = pytest.importorskip("rasterio", reason="rasterio (extra [geo]) is not installed")
    aff = rasterio.transform.Affine(0.3, 0.1, 100.0, -0.2, -0.4, 50.0)
    pts = np.random.default_rng(0).uniform(0, 500, (20, 2))
    ours = apply_geotransform(tuple(aff)[:6], pts)
    theirs = np.array([aff * (float(c), float(r)) for c, r in pts])
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


def test_empty_and_wkt() -> None:
    out = detections_geojson(np.zeros((0, 4)), [], [], NORTH_UP, 'PROJCS["x"]', properties={"f": 1})
    assert out["features"] == [] and out["properties"] == {"f": 1}
    assert crs_member(' PROJCS["x"] ')["properties"]["name"] == 'PROJCS["x"]'


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"transform": (1.0, 0.0, 0.0, 0.0, 1.0)}, "6 finite numbers"),
        ({"transform": (1.0, 0.0, 0.0, 0.0, float("nan"), 0.0)}, "6 finite numbers"),
        ({"transform": (1.0, 2.0, 0.0, 2.0, 4.0, 0.0)}, "singular"),
        ({"crs": ""}, "non-empty string"),
        ({"scores": [0.1, 0.2]}, "do not agree"),
        ({"boxes": np.array([[0.0, np.nan, 1.0, 1.0]])}, "NaN"),
    ],
)
def test_bad_input(kwargs: dict, match: str) -> None:
    args = {
        "boxes": np.array([[0.0, 0.0, 1.0, 1.0]]),
        "scores": [0.5],
        "classes": [0],
        "transform": NORTH_UP,
        "crs": "EPSG:4326",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        detections_geojson(**args)
