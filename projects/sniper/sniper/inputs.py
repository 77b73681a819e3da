"""Inputs and outputs of the image tools (`sniper.demo`, `autofocus.visualize_cli`, benchmarks).

- `list_image_files`: image files named by files, folders (not recursive) or glob patterns
  (``**`` recurses), sorted and de-duplicated;
- `read_images`: those files read one by one, unreadable ones skipped with a warning;
- `unique_output_name`: one output file name per input, ``_1``, ``_2``, ... on collisions;
- `dataset_labels`: class names and dataset category ids of the configured test dataset.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from sniper.data.build import register_builtin_datasets
from sniper.data.catalog import DatasetCatalog, MetadataCatalog
from sniper.image_ops import ImageReadError, read_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "dataset_labels",
    "list_image_files",
    "read_images",
    "unique_output_name",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_image_files(patterns: Sequence[str]) -> list[str]:
    """Expand files, folders and glob patterns into a sorted, de-duplicated list of paths.

    A folder gives its files with an `IMAGE_EXTENSIONS` extension (any case); a pattern
    containing ``*``, ``?`` or ``[`` gives the files it matches (any extension); any other
    word is taken as a file when it is one. Order: the patterns' order, each sorted.

    Raises:
        FileNotFoundError: nothing matched, naming the patterns.
    """
    found: list[str] = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found += [
                os.path.join(pattern, n)
                for n in sorted(os.listdir(pattern))
                if n.lower().endswith(IMAGE_EXTENSIONS)
            ]
        elif any(c in pattern for c in "*?["):
            found += sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        elif os.path.isfile(pattern):
            found.append(pattern)
    unique = list(dict.fromkeys(found))
    if not unique:
        raise FileNotFoundError(f"no input image matched {' '.join(patterns)}")
    return unique


def read_images(
    paths: Iterable[str], input_format: str = "BGR"
) -> Iterator[tuple[str, np.ndarray]]:
    """``(path, image)`` for every readable file of ``paths``, in order; the others are skipped
    with a warning naming them.

    Args:
        paths: image files (e.g. from `list_image_files`).
        input_format: channel order of the images, ``"BGR"`` (as ``cv2.imread``) or ``"RGB"``.

    Yields:
        The path and its uint8 ``(H, W, 3)`` image.
    """
    for path in paths:
        try:
            image = read_image(path, input_format)
        except ImageReadError as err:
            logger.warning("skipping %s", err)
            continue
        yield path, image


def unique_output_name(path: str, used: set[str]) -> str:
    """The input's file name, suffixed ``_k`` when another input already took it; the name
    returned is added to ``used``."""
    name = os.path.basename(path)
    stem, ext = os.path.splitext(name)
    k = 0
    while name in used:
        k += 1
        name = f"{stem}_{k}{ext}"
    used.add(name)
    return name


def dataset_labels(dataset_names: Sequence[str]) -> tuple[list[str] | None, dict[int, int]]:
    """Class names and contiguous id -> dataset category id of the first test dataset.

    Registers the built-in datasets first when the name is unknown (metadata only, nothing
    is generated or loaded).

    Returns:
        ``(None, {})`` when no test dataset is configured or its metadata has no
        ``thing_classes`` (then drawing uses "class k" and json ids are contiguous id + 1).
    """
    if not dataset_names:
        return None, {}
    name = dataset_names[0]
    if name not in DatasetCatalog.list():
        try:
            register_builtin_datasets()  # sets the built-in datasets' metadata, loads nothing
        except ValueError as err:  # built-ins already registered under another cache root
            logger.warning("could not register the built-in datasets: %s", err)
    meta = MetadataCatalog.get(name)
    names = meta.get("thing_classes")
    id_map = meta.get("thing_dataset_id_to_contiguous_id") or {}
    return (list(names) if names else None), {int(v): int(k) for k, v in id_map.items()}
