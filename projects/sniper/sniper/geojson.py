"""Detections as GeoJSON in the image's coordinate reference system, for GIS tools.

A georeferenced image (a GeoTIFF) maps image px to map coordinates with an affine
*geotransform* in rasterio / GDAL order ``(a, b, c, d, e, f)``::

    x = a * col + b * row + c
    y = d * col + e * row + f

where ``(col, row)`` is a point in image px: ``(0, 0)`` is the top-left *corner* of the
top-left pixel and pixel ``(i, j)`` covers ``[i, i + 1) x [j, j + 1)`` — the project's image
frame (docs/design.md section 3), so a box's corners map directly. Each detection becomes a
``Feature`` whose geometry is the box as a closed 5-point ``Polygon`` (corners in the order
top-left, top-right, bottom-right, bottom-left, top-left in image px; a rotated or flipped
transform keeps that order, not a winding rule), with ``properties`` ``score``,
``category_id``, ``category`` (name) and ``bbox`` (the box in image px, XYXY).

The collection carries the CRS in the pre-RFC 7946 ``"crs"`` member (``{"type": "name",
"properties": {"name": ...}}``), which GDAL / QGIS read: ``urn:ogc:def:crs:EPSG::<n>`` for an
``"EPSG:<n>"`` CRS, the CRS string as given otherwise (WKT, which GDAL also accepts).
RFC 7946 readers that assume WGS 84 longitude / latitude see the coordinates of the image's CRS.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["apply_geotransform", "crs_member", "detections_geojson"]

_EPSG = re.compile(r"^\s*EPSG\s*:\s*(\d+)\s*$", re.IGNORECASE)


def _check_transform(transform: Sequence[float]) -> tuple[float, ...]:
    t = tuple(float(v) for v in transform)
    if len(t) != 6 or not all(math.isfinite(v) for v in t):
        raise ValueError(
            f"geotransform must be 6 finite numbers (a, b, c, d, e, f), got {transform!r}"
        )
    if t[0] * t[4] - t[1] * t[3] == 0.0:
        raise ValueError(f"geotransform {t} is singular (a * e - b * d == 0)")
    return t


def apply_geotransform(transform: Sequence[float], points: np.ndarray) -> np.ndarray:
    """Map ``points`` float ``(..., 2)`` ``(col, row)`` image px to ``(x, y)`` map
    coordinates (float64, same shape) with ``transform`` ``(a, b, c, d, e, f)``.

    Raises:
        ValueError: ``transform`` is not 6 finite numbers or is singular.
    """
    a, b, c, d, e, f = _check_transform(transform)
    p = np.asarray(points, np.float64)
    if p.shape[-1:] != (2,):
        raise ValueError(f"points must have shape (..., 2), got {p.shape}")
    col, row = p[..., 0], p[..., 1]
    return np.stack([a * col + b * row + c, d * col + e * row + f], axis=-1)


def crs_member(crs: str) -> dict[str, Any]:
    """The legacy GeoJSON ``"crs"`` member naming ``crs`` (module doc)."""
    if not isinstance(crs, str) or not crs.strip():
        raise ValueError(f"crs must be a non-empty string (e.g. 'EPSG:32633' or WKT), got {crs!r}")
    m = _EPSG.match(crs)
    name = f"urn:ogc:def:crs:EPSG::{m.group(1)}" if m else crs.strip()
    return {"type": "name", "properties": {"name": name}}


def detections_geojson(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    transform: Sequence[float],
    crs: str | None,
    category_names: Sequence[str] | None = None,
    to_dataset_id: Mapping[int, int] | None = None,
    properties: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A GeoJSON ``FeatureCollection`` of one image's detections (module doc).

    Args:
        boxes: float ``(N, 4)`` XYXY image px.
        scores: float ``(N,)``.
        classes: int ``(N,)`` contiguous class ids 0..C-1.
        transform: the image's geotransform ``(a, b, c, d, e, f)`` (image px -> CRS).
        crs: the CRS (``"EPSG:<n>"`` or WKT); ``None`` writes no ``"crs"`` member.
        category_names: class names by contiguous id (``category`` property; else "class k").
        to_dataset_id: contiguous id -> dataset category id (else id + 1, as results.json).
        properties: extra properties of the collection (e.g. the image's file name).

    Raises:
        ValueError: shapes that do not agree, non-finite boxes, a bad transform or crs.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    s = np.asarray(scores, np.float64).reshape(-1)
    k = np.asarray(classes, np.int64).reshape(-1)
    if not len(b) == len(s) == len(k):
        raise ValueError(f"{len(b)} boxes, {len(s)} scores and {len(k)} classes do not agree")
    if not np.isfinite(b).all():
        raise ValueError("boxes hold NaN or infinite coordinates")
    x1, y1, x2, y2 = b.T
    corners = np.stack(
        [np.c_[x1, y1], np.c_[x2, y1], np.c_[x2, y2], np.c_[x1, y2], np.c_[x1, y1]], 1
    )
    ring = apply_geotransform(transform, corners)  # (N, 5, 2)
    names = list(category_names or [])
    ids = dict(to_dataset_id or {})
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring[i].tolist()]},
            "properties": {
                "score": float(s[i]),
                "category_id": int(ids.get(int(k[i]), int(k[i]) + 1)),
                "category": names[k[i]] if 0 <= k[i] < len(names) else f"class {int(k[i])}",
                "bbox": [float(v) for v in b[i]],
            },
        }
        for i in range(len(b))
    ]
    out: dict[str, Any] = {"type": "FeatureCollection"}
    if crs is not None:
        out["crs"] = crs_member(crs)
    if properties:
        out["properties"] = dict(properties)
    out["features"] = features
    return out
