"""The built-in synthetic multi-scale digits dataset: splits, on-disk cache, registration.

Every image is rendered deterministically from ``render_seed(split.seed, index)`` (see
``sniper.data.synthetic_render`` for what an image holds), so nothing needs to be shipped:
``build_split`` writes a split once as JPEGs plus a COCO instances json into a cache folder
and ``register_synthetic_datasets`` makes every split available through ``DatasetCatalog``
(generated on first use).

On-disk layout of a split: ``<root>/<split.name>/images/000000.jpg ...`` (file name = 0-based
index) and ``<root>/<split.name>/instances.json``, written last and atomically; its
``info.synthetic`` entry records the generator version and the split definition, so a
cache built by a different generator or split definition is rebuilt.

Version history: 1 = boxes only; 2 = the same pixels and boxes (bit-identical for a seed)
plus each annotation's exact instance mask as COCO RLE ``segmentation`` (version-1 caches
are rebuilt on first use).
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from sniper.patch_rle import patch_to_rle

from .catalog import DatasetCatalog, MetadataCatalog
from .coco import load_coco_json
from .synthetic_render import SYNTHETIC_CLASSES, render_image, render_instances

__all__ = [
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_SPLITS",
    "SYNTHETIC_VERSION",
    "SyntheticSplit",
    "build_split",
    "default_cache_root",
    "register_synthetic_datasets",
    "render_image",
    "render_instances",
    "render_seed",
    "split_paths",
]

#: Bump whenever the rendered pixels, boxes or the json's fields change: existing caches are
#: then rebuilt. 2: annotations gained ``segmentation`` (COCO RLE of the glyph's pixels).
SYNTHETIC_VERSION = 2


@dataclass(frozen=True)
class SyntheticSplit:
    """A split: ``num_images`` square images of side ``canvas`` px from base seed ``seed``."""

    name: str
    num_images: int
    canvas: int
    seed: int


SYNTHETIC_SPLITS: dict[str, SyntheticSplit] = {
    s.name: s
    for s in (
        SyntheticSplit("synthetic_digits_train", num_images=300, canvas=1024, seed=1000),
        SyntheticSplit("synthetic_digits_val", num_images=50, canvas=1024, seed=2000),
        SyntheticSplit("synthetic_digits_test2048", num_images=30, canvas=2048, seed=3000),
        SyntheticSplit("synthetic_digits_mini", num_images=8, canvas=1024, seed=4000),
    )
}


def render_seed(split_seed: int, index: int) -> int:
    """Seed that ``render_image`` draws image ``index`` (0-based) of a split from.

    Not to be confused with ``chipping.image_seed``, the per-image seed of the chip planner.
    """
    state = np.random.SeedSequence([split_seed, index]).generate_state(1, dtype=np.uint32)
    return int(state[0])


def default_cache_root() -> str:
    """``$SNIPER_DATASETS`` if set, else ``~/.cache/sniper/datasets``."""
    env = os.environ.get("SNIPER_DATASETS")
    if env:
        return env
    return os.path.join(os.path.expanduser("~"), ".cache", "sniper", "datasets")


def split_paths(split: SyntheticSplit, root: str | os.PathLike) -> tuple[str, str]:
    """Absolute ``(json_file, image_root)`` of ``split`` cached under ``root``."""
    out_dir = os.path.join(os.path.abspath(os.fspath(root)), split.name)
    return os.path.join(out_dir, "instances.json"), os.path.join(out_dir, "images")


def _file_name(index: int) -> str:
    return f"{index:06d}.jpg"


def _signature(split: SyntheticSplit) -> dict[str, Any]:
    return {"version": SYNTHETIC_VERSION, **asdict(split)}


def _cache_complete(split: SyntheticSplit, json_file: str, image_root: str) -> bool:
    """Whether ``json_file`` exists, matches ``split`` and all its images are on disk."""
    try:
        with open(json_file, encoding="utf-8") as f:
            info = json.load(f).get("info", {})
    except (OSError, ValueError, AttributeError):
        return False
    if not isinstance(info, dict) or info.get("synthetic") != _signature(split):
        return False
    return all(
        os.path.isfile(os.path.join(image_root, _file_name(i))) for i in range(split.num_images)
    )


def _write_image(
    index: int, split: SyntheticSplit, image_root: str
) -> tuple[int, np.ndarray, np.ndarray, list[dict]]:
    """Render image ``index`` and write it as JPEG (atomically); return its annotations.

    Returns ``(index, boxes, classes, rles)``: ``rles[i]`` is the compressed COCO RLE of
    digit ``i``'s mask, encoded from its box-sized patch (no full-image array per instance).
    """
    image, boxes, classes, masks = render_instances(render_seed(split.seed, index), split.canvas)
    rles = [
        patch_to_rle(mask, int(x1), int(y1), split.canvas, split.canvas)
        for mask, (x1, y1) in zip(masks, boxes[:, :2].tolist(), strict=True)
    ]
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for image {index} of {split.name}")
    path = os.path.join(image_root, _file_name(index))
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(buf.tobytes())
    os.replace(tmp, path)
    return index, boxes, classes, rles


def _init_worker() -> None:
    cv2.setNumThreads(1)


def _coco_dict(
    split: SyntheticSplit, annotations: list[tuple[np.ndarray, np.ndarray, list[dict]]]
) -> dict[str, Any]:
    """COCO instances dict; ``annotations[i]`` = (boxes XYXY float32 (N, 4), classes (N,),
    N compressed RLE dicts) of image ``i``."""
    images, anns = [], []
    for index, (boxes, classes, rles) in enumerate(annotations):
        images.append(
            {"id": index + 1, "file_name": _file_name(index),
             "height": split.canvas, "width": split.canvas}
        )  # fmt: skip
        for (x1, y1, x2, y2), cls, rle in zip(boxes.tolist(), classes.tolist(), rles, strict=True):
            w, h = x2 - x1, y2 - y1
            anns.append(
                {"id": len(anns) + 1, "image_id": index + 1, "category_id": int(cls) + 1,
                 "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0, "segmentation": rle}
            )  # fmt: skip
    return {
        "info": {
            "description": f"sniper synthetic multi-scale digits, split {split.name}",
            "synthetic": _signature(split),
        },
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "digit"}
            for i, name in enumerate(SYNTHETIC_CLASSES)
        ],
    }


@contextlib.contextmanager
def _exclusive(lock_file: str) -> Iterator[None]:
    """Inter-process lock (POSIX ``flock``); a no-op where ``fcntl`` is unavailable."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(lock_file, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_split(
    split: SyntheticSplit, root: str | os.PathLike, num_workers: int = 0
) -> tuple[str, str]:
    """Generate ``split`` under ``root/<split.name>/`` unless a complete cache exists.

    Writes JPEG (quality 95) images ``images/000000.jpg ...`` and then, atomically (temp
    file + ``os.replace``), the COCO instances json ``instances.json``: ``images`` (ids from
    1, in index order), ``annotations`` (ids from 1, in image then placement order; ``bbox``
    ``[x, y, w, h]`` float px, ``area = w * h`` (the box area, not the mask's), ``iscrowd``
    0, ``segmentation`` the exact glyph mask as compressed COCO RLE ``{"size": [H, W],
    "counts": str}``, its set pixels' extent equal to the bbox) and ``categories`` (ids 1..10
    named "0".."9"). The json therefore exists only when the split is complete. Concurrent
    calls (e.g. several training processes) serialize on a lock file; the later ones find
    the cache complete.

    Args:
        split: the split definition.
        root: cache root folder (created if needed).
        num_workers: > 0 renders with a ``spawn`` multiprocessing pool of that many workers.

    Returns:
        Absolute ``(json_file, image_root)``.
    """
    json_file, image_root = split_paths(split, root)
    if _cache_complete(split, json_file, image_root):
        return json_file, image_root
    os.makedirs(image_root, exist_ok=True)
    with _exclusive(os.path.join(os.path.dirname(json_file), ".lock")):
        if _cache_complete(split, json_file, image_root):
            return json_file, image_root
        with contextlib.suppress(FileNotFoundError):
            os.remove(json_file)  # a stale json must never pass for a complete cache
        results: list[Any] = [None] * split.num_images
        worker = functools.partial(_write_image, split=split, image_root=image_root)
        with tqdm(total=split.num_images, desc=f"generating {split.name}", unit="img") as bar:
            if num_workers > 0:
                ctx = multiprocessing.get_context("spawn")
                with ctx.Pool(num_workers, initializer=_init_worker) as pool:
                    for index, *annotations in pool.imap_unordered(worker, range(len(results))):
                        results[index] = tuple(annotations)
                        bar.update()
            else:
                for index in range(split.num_images):
                    _, *annotations = worker(index)
                    results[index] = tuple(annotations)
                    bar.update()
        tmp = f"{json_file}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(_coco_dict(split, results), f)
        os.replace(tmp, json_file)
    return json_file, image_root


def _auto_workers(split: SyntheticSplit) -> int:
    """Pool size for lazy generation: none for tiny splits or inside daemonic workers."""
    if split.num_images < 16 or multiprocessing.current_process().daemon:
        return 0
    return min(8, os.cpu_count() or 1)


def _load_split(split: SyntheticSplit, root: str, name: str) -> list[dict]:
    json_file, image_root = build_split(split, root, num_workers=_auto_workers(split))
    return load_coco_json(json_file, image_root, dataset_name=name)


def register_synthetic_datasets(root: str | os.PathLike | None = None) -> list[str]:
    """Register every split of ``SYNTHETIC_SPLITS`` in ``DatasetCatalog``, lazily.

    Nothing is generated here: the first ``DatasetCatalog.get(name)`` builds the split
    (``build_split``) under ``root`` (default ``default_cache_root()``) and loads its json.
    Metadata (``thing_classes``, ``thing_dataset_id_to_contiguous_id``, ``json_file``,
    ``image_root``, ``evaluator_type="coco"``, ``canvas``) is set now. Calling it again with
    the same root is a no-op; a name already registered with another json raises
    ``ValueError``.

    Returns:
        The registered dataset names, in ``SYNTHETIC_SPLITS`` order.
    """
    root = os.path.abspath(os.fspath(root) if root is not None else default_cache_root())
    for name, split in SYNTHETIC_SPLITS.items():
        json_file, image_root = split_paths(split, root)
        if name in DatasetCatalog.list():
            registered = MetadataCatalog.get(name).get("json_file")
            if registered != json_file:
                raise ValueError(
                    f"dataset '{name}' is already registered with json {registered!r}, "
                    f"not {json_file!r}"
                )
            continue
        DatasetCatalog.register(name, functools.partial(_load_split, split, root, name))
        try:
            MetadataCatalog.get(name).set(
                thing_classes=list(SYNTHETIC_CLASSES),
                thing_dataset_id_to_contiguous_id={i + 1: i for i in range(10)},
                json_file=json_file,
                image_root=image_root,
                evaluator_type="coco",
                canvas=split.canvas,
            )
        except ValueError:
            DatasetCatalog.remove(name)
            raise
    return list(SYNTHETIC_SPLITS)
