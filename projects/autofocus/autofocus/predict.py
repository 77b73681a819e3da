"""Command line: AutoFocus on folders of big images, resumable, read by windows.

Usage::

    python -m autofocus.predict --config-file configs/autofocus/synthetic_mobilenet.yaml \\
        MODEL.WEIGHTS output/model_final.pth --input /data/scenes/ --output out/ \\
        [--backend auto] [--overwrite]

``--input`` (repeatable) takes image files, folders (their files with an extension of
``sniper.sources.SOURCE_EXTENSIONS``: common images, TIFF / BigTIFF / GeoTIFF, whole-slide
and GDAL rasters) or glob patterns. Every image is opened with
``sniper.sources.open_image_source`` (``--backend``): TIFFs, rasters and slides are read by
windows (the coarse scale from a reduced level, each FocusChip from its region), so an image
need not fit in memory; other files are decoded whole. ``KEY VALUE`` config overrides may
sit anywhere among the flags.

Outputs in ``--output``, each written to a temporary name and renamed:

- ``<name>.json`` per image (``name``: the file's stem, ``_1``, ``_2``, ... for repeated
  stems): ``file_name``, ``height``, ``width``, ``seconds``, ``pixels``,
  ``pixels_per_scale``, ``pixel_fraction``, ``chips_per_scale`` (XYXY image px),
  ``config_sha256`` and ``detections``, the image's COCO-style rows (``image_id`` = name,
  ``file_name``, ``category_id``, ``bbox`` ``[x, y, w, h]`` image px, ``score``).
- ``<name>.geojson`` for a georeferenced image (``sniper.geojson``: boxes as polygons in the
  image's CRS), written before its json.
- ``results.json``: the rows of every image of the run (done now or before), at the end.

**Resuming.** An image whose ``<name>.json`` exists with the same ``config_sha256`` (the
config, weights path included) is skipped; run the same command again after a crash or
Ctrl-C. ``--overwrite`` redoes every image.

Progress: one bar (or log line, off a terminal) over the images, and one per scale of the
running image over its network inputs. Inputs that are missing, not regular files,
unreadable or corrupt are skipped with a warning naming them. Exit status: 0; 2 with one
``error:`` line when no input matched or none could be read, or the output folder cannot be
used; 130 on Ctrl-C (the images done are kept).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from sniper.cli_errors import INTERRUPTED, cli_errors, exit_with_error
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.engine.preflight import preflight
from sniper.geojson import detections_geojson
from sniper.inputs import dataset_labels, list_image_files, unique_output_name
from sniper.output_files import OutputDirError, atomic_write_json, check_output_dir
from sniper.progress import Progress
from sniper.sources import BACKENDS, SOURCE_EXTENSIONS, ImageSourceError, open_image_source

from .cli import parse_with_overrides
from .config import load_config_or_exit
from .predictor import AutoFocusPredictor

__all__ = ["image_record", "main", "parse_args"]

logger = logging.getLogger("sniper.autofocus.predict")

RESULTS_FILE = "results.json"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (module docstring); overrides land in ``args.opts``."""
    parser = argparse.ArgumentParser(
        prog="python -m autofocus.predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="YAML config")
    parser.add_argument(
        "--input", action="append", required=True, help="image file, folder or glob pattern"
    )
    parser.add_argument("--output", required=True, help="folder for the json / geojson files")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", *sorted(BACKENDS)],
        help="how images are read (sniper.sources.open_image_source)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo images whose results already exist"
    )
    return parse_with_overrides(parser, argv)


def config_sha256(cfg: Any) -> str:
    """The hash of the whole config (``cfg.dump()``), which names the weights file."""
    return hashlib.sha256(cfg.dump().encode()).hexdigest()


def result_rows(name: str, path: str, out: dict, to_dataset_id: dict[int, int]) -> list[dict]:
    """The COCO-style rows of one image's detections (module docstring)."""
    return [
        {
            "image_id": name,
            "file_name": path,
            "category_id": to_dataset_id.get(int(c), int(c) + 1),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": s,
        }
        for (x1, y1, x2, y2), s, c in zip(
            out["boxes"].tolist(), out["scores"].tolist(), out["classes"].tolist(), strict=True
        )
    ]


def image_record(
    name: str, path: str, size: tuple[int, int], out: dict, rows: list[dict], sha: str
) -> dict:
    """The ``<name>.json`` of one image (module docstring)."""
    return {
        "file_name": path,
        "height": int(size[0]),
        "width": int(size[1]),
        "seconds": float(out.get("seconds", 0.0)),
        "pixels": int(out["pixels"]),
        "pixels_per_scale": [int(v) for v in out["pixels_per_scale"]],
        "pixel_fraction": float(out["pixel_fraction"]),
        "chips_per_scale": [c.tolist() for c in out["chips_per_scale"]],
        "config_sha256": sha,
        "detections": rows,
    }


def _done_rows(path: str, sha: str) -> list[dict] | None:
    """The detections of a finished ``<name>.json`` made with config ``sha``, else None."""
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("config_sha256") != sha:
        return None
    rows = record.get("detections")
    return rows if isinstance(rows, list) else None


class ScaleBars:
    """A progress hook of the runner: one ``Progress`` per scale of the running image."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bar: Progress | None = None

    def __call__(self, scale: int, num_scales: int, done: int, total: int) -> None:
        if done == 0:
            self.close()
            self.bar = Progress(
                desc=f"{self.name} scale {scale + 1}/{num_scales}",
                total=total,
                unit="inputs",
                log=logger,
                every_s=10.0,
            )
        elif self.bar is not None:
            self.bar.update(done - self.bar.done)
        if self.bar is not None and done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m autofocus.predict`` (exit status in the module doc)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    args = parse_args(argv)
    with cli_errors():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    skipped: list[str] = []
    try:
        paths = list_image_files(args.input, skipped, SOURCE_EXTENSIONS)
        check_output_dir(args.output)
    except (FileNotFoundError, OutputDirError) as err:
        exit_with_error(str(err))
    cfg = load_config_or_exit(args.config_file, args.opts)
    build_dataset_catalog_or_exit(cfg, check=False)  # class names of DATASETS.TEST[0]
    preflight(cfg)
    predictor = AutoFocusPredictor(cfg)
    labels = dataset_labels(cfg.DATASETS.TEST)
    sha = config_sha256(cfg)
    used: set[str] = set()
    names = [os.path.splitext(unique_output_name(p, used))[0] for p in paths]
    rows: list[dict] = []
    done = resumed = 0
    images = Progress(desc="autofocus.predict", total=len(paths), log=logger)
    try:
        for path, name in zip(paths, names, strict=True):
            json_path = os.path.join(args.output, name + ".json")
            previous = None if args.overwrite else _done_rows(json_path, sha)
            if previous is not None:
                rows += previous
                resumed += 1
            else:
                image_rows = _predict_one(predictor, args, path, name, sha, skipped, labels)
                if image_rows is not None:
                    rows += image_rows
                    done += 1
            images.update(1)
    except KeyboardInterrupt:
        images.close()
        print(
            f"interrupted: {done} images done in this run ({resumed} before) are in "
            f"{args.output}; run the same command again to go on",
            file=sys.stderr,
            flush=True,
        )
        return INTERRUPTED
    images.close()
    if skipped:
        logger.warning("skipped %d inputs: %s", len(skipped), "; ".join(skipped))
    if not done and not resumed:
        exit_with_error(
            f"none of the {len(skipped)} inputs could be read "
            f"({skipped[0] if skipped else 'no image'}{', ...' if len(skipped) > 1 else ''})"
        )
    atomic_write_json(os.path.join(args.output, RESULTS_FILE), rows)
    logger.info(
        "%d images done, %d already done (skipped), %d unreadable, %d detections; outputs in %s",
        done,
        resumed,
        len(skipped),
        len(rows),
        args.output,
    )
    return 0


def _predict_one(
    predictor: AutoFocusPredictor,
    args: argparse.Namespace,
    path: str,
    name: str,
    sha: str,
    skipped: list[str],
    labels: tuple[list[str] | None, dict[int, int]],
) -> list[dict] | None:
    """Run one image and write its files; its rows, or None (warned, in ``skipped``) when
    it cannot be read."""
    class_names, to_dataset_id = labels
    try:
        source = open_image_source(path, args.backend)
    except ImageSourceError as err:
        logger.warning("skipping %s", err)  # the message names the file
        skipped.append(str(err))
        return None
    bars = ScaleBars(name)
    predictor.cascade.progress_hooks.append(bars)
    start = time.perf_counter()
    try:
        with source:
            out = predictor(source)
            size, georef = source.size, source.georeference
    except ImageSourceError as err:
        logger.warning("skipping %s", err)  # the message names the file
        skipped.append(str(err))
        return None
    finally:
        bars.close()
        predictor.cascade.progress_hooks.remove(bars)
    out["seconds"] = time.perf_counter() - start
    image_rows = result_rows(name, path, out, to_dataset_id)
    if georef is not None:
        collection = detections_geojson(
            out["boxes"],
            out["scores"],
            out["classes"],
            georef.transform,
            georef.crs,
            class_names,
            to_dataset_id,
            {"file_name": path},
        )
        atomic_write_json(os.path.join(args.output, name + ".geojson"), collection)
    record = image_record(name, path, size, out, image_rows, sha)
    atomic_write_json(os.path.join(args.output, name + ".json"), record)
    logger.info(
        "%s: %d detections, %.3f of the full pyramid's pixels, %.1f s",
        name,
        len(image_rows),
        out["pixel_fraction"],
        out["seconds"],
    )
    return image_rows


if __name__ == "__main__":
    sys.exit(main())
