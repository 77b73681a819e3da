"""The checks of a job's data before its first iteration (what can fail late, found early).

``check_job_data(cfg, train=...)`` loads DATASETS.TRAIN (when training) and DATASETS.TEST
and raises ``ValueError`` with a one-line message when:

- ``MODEL.NUM_CLASSES`` differs from the number of categories of a dataset (either way),
  naming both numbers and the dataset;
- a dataset has no image;
- ``MODEL.MASK_ON`` is set but a training dataset has no masks (no ``segmentations``);
- the training set yields no chip in its first epoch (no box in any scale's valid range);
- no image that has chips in the first epoch can be used (training), or no test image
  can be used: missing, unreadable, or of another size than its record's. The message
  names how many files failed and the first few with their reasons.

When only some images are unusable it logs one warning per dataset with the count and the
first few files: training skips their chips (`sniper.data.build.TrainChipLoader`),
evaluation skips them and counts them (`sniper.engine.evaluation.inference_on_dataset`,
``speed/skipped_images``). Images are checked by their header (``image_size``), without
decoding the pixels. ``check_job_data_or_exit`` is the entry points' form (one ``error:``
line, exit status 2).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from sniper.data.build import build_chip_sampler, get_records
from sniper.data.catalog import MetadataCatalog
from sniper.image_ops import ImageReadError
from sniper.progress import track

__all__ = [
    "check_image_files",
    "check_job_data",
    "check_job_data_or_exit",
    "check_num_classes",
    "image_size",
]

logger = logging.getLogger("sniper.data")

_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_SHOWN = 3


def _header_size(path: str) -> tuple[int, int] | None:
    """``(height, width)`` from the header PIL reads (EXIF orientation applied), or None for a
    format PIL does not know or a header it cannot parse (OpenCV decides then)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.getexif().get(0x0112, 1) in _ROTATED:
                width, height = height, width
            return int(height), int(width)
    except FileNotFoundError:
        raise ImageReadError(f"cannot read image {path!r}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def image_size(path: str) -> tuple[int, int]:
    """``(height, width)`` of the image file ``path`` as ``sniper.image_ops.read_image``
    returns it (after the EXIF orientation), read from the header when PIL knows the format,
    else by decoding it with OpenCV.

    Raises:
        ImageReadError: naming ``path`` when it is missing or not an image.
    """
    size = _header_size(path)
    if size is not None:
        return size
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"cannot read image {path!r}: missing, unreadable or corrupt")
    return int(image.shape[0]), int(image.shape[1])


def check_image_files(records: Sequence[dict], desc: str = "check images") -> list[tuple[str, str]]:
    """``(file_name, reason)`` of every record whose image is missing, unreadable or of
    another size than the record's ``height`` x ``width``; in record order."""
    failures: list[tuple[str, str]] = []
    for record in track(records, desc=desc, every_n=5000):
        path = record["file_name"]
        try:
            size = image_size(path)
        except ImageReadError as e:
            failures.append((path, f"unreadable: {e}"))
            continue
        expected = (int(record["height"]), int(record["width"]))
        if size != expected:
            failures.append(
                (
                    path,
                    f"image is {size[0]}x{size[1]} (HxW) but its record says "
                    f"{expected[0]}x{expected[1]}",
                )
            )
    return failures


def _failures_text(failures: list[tuple[str, str]]) -> str:
    shown = "; ".join(f"{f} ({r})" for f, r in failures[:_SHOWN])
    more = f"; and {len(failures) - _SHOWN} more" if len(failures) > _SHOWN else ""
    return shown + more


def check_num_classes(num_classes: int, dataset_name: str) -> None:
    """``ValueError`` unless the dataset's ``thing_classes`` (set when it is loaded) number
    ``num_classes``; a dataset without ``thing_classes`` is not checked."""
    names = MetadataCatalog.get(dataset_name).get("thing_classes")
    if names is None or len(names) == int(num_classes):
        return
    listed = ", ".join(map(str, names[:10])) + (", ..." if len(names) > 10 else "")
    raise ValueError(
        f"MODEL.NUM_CLASSES = {num_classes} but dataset '{dataset_name}' has {len(names)} "
        f"categories ({listed}); set MODEL.NUM_CLASSES {len(names)}"
    )


def _load(names: Sequence[str], key: str, num_classes: int, need_masks: bool = False) -> list[dict]:
    """The records of ``names`` (one dataset at a time, to name the empty one); with
    ``need_masks`` (MODEL.MASK_ON) every record must have ``segmentations``."""
    records: list[dict] = []
    for name in names:
        own = get_records([name])
        if not own:
            raise ValueError(f"dataset '{name}' ({key}) has no images")
        check_num_classes(num_classes, name)
        if need_masks and not all("segmentations" in r for r in own):
            raise ValueError(
                f"MODEL.MASK_ON is set but dataset '{name}' ({key}) has no instance masks "
                "(no 'segmentation' in its annotations): train with MODEL.MASK_ON False, or "
                "on a dataset with masks"
            )
        records += own
    return records


def _check_train(cfg: Any) -> None:
    names = list(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError(
            "DATASETS.TRAIN is empty: name at least one registered dataset to train on "
            "(e.g. DATASETS.TRAIN \"('synthetic_digits_train',)\" or --register-coco)"
        )
    records = _load(names, "DATASETS.TRAIN", cfg.MODEL.NUM_CLASSES, bool(cfg.MODEL.MASK_ON))
    seeded = cfg.clone()  # a negative SEED would draw (and log) a seed here
    seeded.defrost()
    seeded.SEED = max(int(cfg.SEED), 0)
    plan, _ = build_chip_sampler(seeded, records).plan_chips(0)
    if len(plan) == 0:
        raise ValueError(
            f"DATASETS.TRAIN {names} yields no chips: none of its {len(records)} images has "
            "a box in any scale's valid range (check SNIPER.VALID_RANGES and the data)"
        )
    with_chips = [records[i] for i in np.unique(plan.image_index)]
    failures = check_image_files(with_chips, desc="check training images")
    if len(failures) == len(with_chips):
        raise ValueError(
            f"DATASETS.TRAIN {names}: none of the {len(with_chips)} images with chips can be "
            f"read at its recorded size: {_failures_text(failures)}"
        )
    if failures:
        logger.warning(
            "DATASETS.TRAIN %s: %d of %d images with chips cannot be used; their chips are "
            "skipped: %s",
            names,
            len(failures),
            len(with_chips),
            _failures_text(failures),
        )


def _check_test(cfg: Any) -> None:
    for name in cfg.DATASETS.TEST:
        records = _load([name], "DATASETS.TEST", cfg.MODEL.NUM_CLASSES)
        failures = check_image_files(records, desc=f"check images of {name}")
        if len(failures) == len(records):
            raise ValueError(
                f"dataset '{name}' (DATASETS.TEST): none of its {len(records)} images can be "
                f"read at its recorded size: {_failures_text(failures)}"
            )
        if failures:
            logger.warning(
                "dataset '%s' (DATASETS.TEST): %d of %d images cannot be used and will be "
                "skipped by the evaluation: %s",
                name,
                len(failures),
                len(records),
                _failures_text(failures),
            )


def check_job_data(cfg: Any, train: bool = True) -> None:
    """Check DATASETS.TRAIN (when ``train``) and DATASETS.TEST of ``cfg`` (module docstring).

    The datasets must be registered (``sniper.data.registration.build_dataset_catalog``).

    Raises:
        ValueError: one line naming the dataset, the key and what is wrong.
    """
    if train:
        _check_train(cfg)
    _check_test(cfg)


def check_job_data_or_exit(cfg: Any, train: bool = True) -> None:
    """``check_job_data(cfg, train)``, or print one ``error: ...`` line and exit 2."""
    try:
        check_job_data(cfg, train)
    except (KeyError, ValueError, OSError) as err:
        message = err.args[0] if len(err.args) == 1 else str(err)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
