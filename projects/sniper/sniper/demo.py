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
- ``<file name stem>.geojson`` for a georeferenced input (a GeoTIFF, or any raster GDAL
  reads when rasterio is installed, ``sniper.sources.read_georeference``): the same
  detections as box polygons in the image's CRS (``sniper.geojson.detections_geojson``),
  for GIS tools.
- ``results.json``: COCO-style results of *all* detections (no confidence cut, so AP can be
  computed from it): ``{"image_id": <file name stem, str>, "file_name": <input path>,
  "category_id": <dataset category id via the metadata's
  thing_dataset_id_to_contiguous_id, else contiguous id + 1>, "bbox": [x, y, w, h] image px,
  "score"}``, plus ``"segmentation"``, the detection's mask as COCO RLE ``{"size": [H, W],
  "counts": str}``, for a model with masks (``MODEL.MASK_ON``; the drawings then show the
  masks too). Map ``image_id``/``file_name`` to a dataset's integer ids before COCOeval.

Every output is written to a temporary name and renamed, so no file is ever half-written.
``results.json`` is valid json at all times: it is rewritten with the results so far after
the first image, then at most every 5 s, and at the end. The output folder is checked (it
can be created, is a folder, is writable) before the model is built.

Inputs that are missing, not regular files (FIFOs, sockets, devices, folders, broken links:
never opened), unreadable, empty or corrupt are skipped with a warning naming them and
counted. Exit status: 0; 2 with one ``error:`` line when no input matched or none could be
read, or the output folder cannot be used; 130 on Ctrl-C, after saving the results of the
images done (one line says how many).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence

from sniper.cli_errors import INTERRUPTED, cli_errors, exit_with_error
from sniper.config import load_config_or_exit
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.engine.preflight import preflight
from sniper.geojson import detections_geojson
from sniper.inference.predictor import SniperPredictor
from sniper.inputs import dataset_labels, list_image_files, read_images, unique_output_name
from sniper.output_files import (
    OutputDirError,
    ResultsWriter,
    atomic_write_image,
    atomic_write_json,
    check_output_dir,
)
from sniper.progress import track
from sniper.register_args import add_register_coco_argument, register_coco_opts
from sniper.sources import read_georeference
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


def check_flags(args: argparse.Namespace) -> None:
    """One ``error:`` line (exit 2) for a numeric flag out of its range: ``--confidence`` in
    [0, 1], ``--max-pixels >= 0`` (0 = never tile), ``--tile-size >= 32``,
    ``0 <= --tile-overlap`` (below the tile size, checked by the engine)."""
    if not 0.0 <= args.confidence <= 1.0:  # NaN fails both comparisons
        exit_with_error(f"--confidence {args.confidence}: must be a score in [0, 1]")
    for flag, value, low in (
        ("--max-pixels", args.max_pixels, 0),
        ("--tile-size", args.tile_size, 32),
        ("--tile-overlap", args.tile_overlap, 0),
    ):
        if value is not None and value < low:
            exit_with_error(f"{flag} {value}: must be >= {low}")


def _result_rows(path: str, out: dict, to_dataset_id: dict[int, int]) -> list[dict]:
    """The COCO-style ``results.json`` rows of one image (module docstring); with the
    predictor's ``masks`` (COCO RLE per box), each row's ``segmentation`` (counts as str)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    rows = [
        {
            "image_id": stem,
            "file_name": path,
            "category_id": to_dataset_id.get(int(cls), int(cls) + 1),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score,
        }
        for (x1, y1, x2, y2), score, cls in zip(
            out["boxes"].tolist(), out["scores"].tolist(), out["classes"].tolist(), strict=True
        )
    ]
    masks = out.get("masks")
    if masks is not None:
        for row, rle in zip(rows, masks, strict=True):
            counts = rle["counts"]
            counts = counts.decode("ascii") if isinstance(counts, bytes) else counts
            row["segmentation"] = {"size": [int(v) for v in rle["size"]], "counts": counts}
    return rows


def _write_geojson(path: str, geojson_path: str, out: dict, cfg: object) -> None:
    """``geojson_path`` with ``out``'s detections when the input ``path`` is georeferenced."""
    georef = read_georeference(path)
    if georef is None:
        return
    class_names, to_dataset_id = dataset_labels(cfg.DATASETS.TEST)  # type: ignore[attr-defined]
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
    atomic_write_json(geojson_path, collection)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m sniper.demo``; returns the exit status: 0, 2 when no input
    could be read or an output cannot be written (one ``error:`` line), 130 on Ctrl-C after
    saving the results of the images done."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    args = parse_args(argv)
    with cli_errors():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """``main``'s body (a user's mistake is one ``error: ...`` line, `sniper.cli_errors`)."""
    check_flags(args)
    skipped: list[str] = []
    try:
        paths = list_image_files(args.input, skipped)
        check_output_dir(args.output)
    except (FileNotFoundError, OutputDirError) as err:
        exit_with_error(str(err))
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
    try:
        predictor = SniperPredictor(cfg, input_format="BGR", **overrides)
    except ValueError as err:
        if not overrides:
            raise
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in overrides.items())
        exit_with_error(f"{flags}: {err}")
    class_names, to_dataset_id = dataset_labels(cfg.DATASETS.TEST)
    results_path = os.path.join(args.output, RESULTS_FILE)
    try:
        writer = ResultsWriter(results_path)
    except OSError as err:
        exit_with_error(f"cannot write {results_path}: {err.strerror or err}")
    used, pixels, not_written, start = set(), 0, 0, time.perf_counter()
    bar = track(paths, desc="sniper.demo", log=logger)
    try:
        for path, image in read_images(bar, "BGR", skipped):
            out = predictor(image)
            pixels += out["pixels"]
            drawn = draw_detections(
                image[:, :, ::-1],
                out["boxes"],
                out["scores"],
                out["classes"],
                class_names,
                args.confidence,
                out.get("masks"),
            )
            out_path = os.path.join(args.output, unique_output_name(path, used))
            try:
                atomic_write_image(out_path, drawn[:, :, ::-1])
                _write_geojson(path, os.path.splitext(out_path)[0] + ".geojson", out, cfg)
            except (OSError, ValueError) as err:
                not_written += 1
                logger.warning("could not write %s: %s", out_path, err)
            writer.add(_result_rows(path, out, to_dataset_id))
        bar.close()
        writer.close()
    except KeyboardInterrupt:
        bar.close()
        writer.close()
        print(
            f"interrupted: results of {writer.saved_images} of {len(paths)} images saved in "
            f"{results_path}",
            file=sys.stderr,
            flush=True,
        )
        return INTERRUPTED
    except OSError as err:
        exit_with_error(f"cannot write {results_path}: {err.strerror or err}")
    done = writer.images
    if skipped:
        logger.warning("skipped %d inputs: %s", len(skipped), "; ".join(skipped))
    if not done:
        exit_with_error(
            f"none of the {len(skipped)} inputs could be read "
            f"({skipped[0] if skipped else 'no image'}{', ...' if len(skipped) > 1 else ''}); "
            f"{results_path} is empty"
        )
    seconds = time.perf_counter() - start
    logger.info(
        "%d of %d images (%d skipped, %d drawings not written), %d detections, %.3g "
        "network-input pixels per image, %.2f s per image; outputs in %s",
        done,
        done + len(skipped),
        len(skipped),
        not_written,
        len(writer.results),
        pixels / max(done, 1),
        seconds / max(done, 1),
        args.output,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
