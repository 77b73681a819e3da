"""Run SNIPER multi-scale inference on images and save annotated copies plus a results json.

Usage::

    python -m sniper.demo --config-file cfg.yaml --input img.jpg | folder | "glob/*.jpg" \\
        --output outdir [--confidence 0.5] [KEY VALUE ...]

``--input`` takes one or more image files, folders (their images with a known extension, not
recursive) or glob patterns (``**`` recurses), see ``sniper.inputs.list_image_files``.
Trailing ``KEY VALUE`` pairs override the config (e.g. ``MODEL.WEIGHTS path/model_final.pth
MODEL.DEVICE cuda``); put them after ``--output`` or another option, or after ``--``, since
``--input`` takes every word up to the next option.

Outputs in ``--output``:

- ``<file name>`` for every readable input: the image with the detections scoring at least
  ``--confidence``, labelled with class names from ``MetadataCatalog`` of
  ``cfg.DATASETS.TEST[0]`` when it is registered (built-in datasets are), else "class k".
  Inputs sharing a file name get ``_1``, ``_2``, ... suffixes.
- ``results.json``: COCO-style results of *all* detections (no confidence cut, so AP can be
  computed from it): ``{"image_id": <file name stem, str>, "file_name": <input path>,
  "category_id": <dataset category id via the metadata's
  thing_dataset_id_to_contiguous_id, else contiguous id + 1>, "bbox": [x, y, w, h] image px,
  "score"}``. Map ``image_id``/``file_name`` to a dataset's integer ids before COCOeval.

Unreadable images are skipped with a warning; no matching input at all is an error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

import cv2

from sniper.cli_errors import cli_errors
from sniper.config import load_config_or_exit
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.engine.preflight import preflight
from sniper.inference.predictor import SniperPredictor
from sniper.inputs import dataset_labels, list_image_files, read_images, unique_output_name
from sniper.progress import track
from sniper.register_args import add_register_coco_argument, register_coco_opts
from sniper.visualization_dets import draw_detections

__all__ = ["main", "parse_args"]

logger = logging.getLogger("sniper.demo")

RESULTS_FILE = "results.json"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m sniper.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="YAML config")
    parser.add_argument(
        "--input", nargs="+", required=True, help="image files, folders or glob patterns"
    )
    parser.add_argument("--output", required=True, help="folder for annotated images + json")
    parser.add_argument(
        "--confidence",
        type=float,
        default=0.5,
        help="minimum score of drawn detections (json keeps all)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="tile canvases with more pixels (default: library default)",
    )
    parser.add_argument("--tile-size", type=int, default=None, help="tile side (canvas px)")
    parser.add_argument("--tile-overlap", type=int, default=None, help="tile overlap (canvas px)")
    add_register_coco_argument(parser)
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="config overrides as KEY VALUE pairs"
    )
    args = parser.parse_args(argv)
    if args.opts[:1] == ["--"]:
        args.opts = args.opts[1:]
    args.parser = parser
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m sniper.demo``; returns the exit status (0; a user's
    mistake is one ``error: ...`` line and status 2, `sniper.cli_errors`)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    args = parse_args(argv)
    with cli_errors():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        paths = list_image_files(args.input)
    except FileNotFoundError as err:
        args.parser.error(str(err))
    opts = register_coco_opts(args.config_file, args.opts, args.register_coco, load_config_or_exit)
    cfg = load_config_or_exit(args.config_file, opts)
    build_dataset_catalog_or_exit(cfg, check=False)  # class names of DATASETS.TEST[0]
    preflight(cfg)
    overrides = {
        k: v
        for k, v in (
            ("max_pixels", args.max_pixels),
            ("tile_size", args.tile_size),
            ("tile_overlap", args.tile_overlap),
        )
        if v is not None
    }
    predictor = SniperPredictor(cfg, input_format="BGR", **overrides)
    class_names, to_dataset_id = dataset_labels(cfg.DATASETS.TEST)
    os.makedirs(args.output, exist_ok=True)
    results, used, done, pixels, start = [], set(), 0, 0, time.perf_counter()
    for path, image in read_images(track(paths, desc="sniper.demo", log=logger), "BGR"):
        out = predictor(image)
        done, pixels = done + 1, pixels + out["pixels"]
        drawn = draw_detections(
            image[:, :, ::-1],
            out["boxes"],
            out["scores"],
            out["classes"],
            class_names,
            args.confidence,
        )
        out_path = os.path.join(args.output, unique_output_name(path, used))
        if not cv2.imwrite(out_path, drawn[:, :, ::-1]):
            logger.warning("could not write %s", out_path)
        stem = os.path.splitext(os.path.basename(path))[0]
        for (x1, y1, x2, y2), score, cls in zip(
            out["boxes"].tolist(), out["scores"].tolist(), out["classes"].tolist(), strict=True
        ):
            results.append(
                {
                    "image_id": stem,
                    "file_name": path,
                    "category_id": to_dataset_id.get(int(cls), int(cls) + 1),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    with open(os.path.join(args.output, RESULTS_FILE), "w", encoding="utf-8") as f:
        json.dump(results, f)
    seconds = time.perf_counter() - start
    logger.info(
        "%d of %d images, %d detections, %.3g network-input pixels per image, "
        "%.2f s per image; outputs in %s",
        done,
        len(paths),
        len(results),
        pixels / max(done, 1),
        seconds / max(done, 1),
        args.output,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
