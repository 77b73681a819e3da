"""Inputs and outputs of the image tools (`sniper.demo`, `autofocus.visualize_cli`, benchmarks).

- `list_image_files`: image files named by files, folders (not recursive) or glob patterns
  (``**`` recurses), sorted and de-duplicated; only regular files, the others (missing,
  FIFO, socket, device, broken link) skipped with a warning and counted;
- `read_images`: those files read one by one, unreadable ones skipped with a warning and
  counted;
- `file_problem`: why a path is not a regular file, found without opening it;
- `unique_output_name`: one output file name per input, ``_1``, ``_2``, ... on collisions;
- `dataset_labels`: class names and dataset category ids of the configured test dataset.
"""

from __future__ import annotations

import glob
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from sniper.data.build import register_builtin_datasets
from sniper.data.catalog import DatasetCatalog, MetadataCatalog
from sniper.image_ops import ImageReadError, read_image

__all__ = [
    "IMAGE_EXTENSIONS",
    "dataset_labels",
    "file_problem",
    "list_image_files",
    "read_images",
    "unique_output_name",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def file_problem(path: str) -> str | None:
    """Why ``path`` cannot be read as an image file without opening it, or None when it is a
    regular file (symbolic links followed).

    Nothing is opened: a FIFO, socket or device would block or stream forever.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "broken symbolic link" if os.path.islink(path) else "no such file"
    except OSError as err:
        return f"cannot access it ({err.strerror or err})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not an image file"
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"))
    kind = next((name for test, name in kinds if test(mode)), "a device")
    return f"not a regular file ({kind}), not opened"


def _skip(path: str, reason: str, skipped: list[str] | None) -> None:
    logger.warning("skipping %s: %s", path, reason)
    if skipped is not None:
        skipped.append(f"{path}: {reason}")


def list_image_files(
    patterns: Sequence[str],
    skipped: list[str] | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> list[str]:
    """Expand files, folders and glob patterns into a sorted, de-duplicated list of paths.

    A folder gives its files with an ``extensions`` extension (any case; default
    `IMAGE_EXTENSIONS`); a pattern
    containing ``*``, ``?`` or ``[`` gives the files it matches (any extension); any other
    word is taken as a file. Only regular files (symbolic links followed) are listed: a
    named file that is missing, and anything with an image name that is not a regular file
    (FIFO, socket, device, folder, broken link), is skipped with a warning naming it and
    appended to ``skipped`` (``"path: reason"``); such files are never opened. Folders
    matched by a glob pattern are left out silently. Order: the patterns' order, each
    sorted.

    Raises:
        FileNotFoundError: no file at all, naming the patterns (and how many were skipped).
    """
    found: list[str] = []
    skips: list[str] = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            suffixes = tuple(e.lower() for e in extensions)
            names = sorted(n for n in os.listdir(pattern) if n.lower().endswith(suffixes))
            candidates = [(os.path.join(pattern, n), True) for n in names]
        elif any(c in pattern for c in "*?["):
            candidates = [
                (p, not os.path.isdir(p)) for p in sorted(glob.glob(pattern, recursive=True))
            ]
        else:
            candidates = [(pattern, True)]
        for path, report in candidates:
            problem = file_problem(path)
            if problem is None:
                found.append(path)
            elif report:
                _skip(path, problem, skips)
    if skipped is not None:
        skipped += skips
    unique = list(dict.fromkeys(found))
    if not unique:
        extra = ""
        if skips:
            more = ", ..." if len(skips) > 1 else ""
            extra = f" ({len(skips)} skipped: {skips[0]}{more})"
        raise FileNotFoundError(f"no input image matched {' '.join(patterns)}{extra}")
    return unique


def read_images(
    paths: Iterable[str], input_format: str = "BGR", skipped: list[str] | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """``(path, image)`` for every readable file of ``paths``, in order; the others (missing,
    not a regular file, unreadable, empty or corrupt) are skipped with a warning naming them
    and appended to ``skipped`` (``"path: reason"``). A file that is not a regular file
    (FIFO, socket, device) is never opened.

    Args:
        paths: image files (e.g. from `list_image_files`).
        input_format: channel order of the images, ``"BGR"`` (as ``cv2.imread``) or ``"RGB"``.
        skipped: a list that receives one entry per skipped file.

    Yields:
        The path and its uint8 ``(H, W, 3)`` image.
    """
    for path in paths:
        problem = file_problem(path)
        if problem is not None:
            _skip(path, problem, skipped)
            continue
        try:
            image = read_image(path, input_format)
        except ImageReadError:
            _skip(path, "missing, unreadable, empty or not an image", skipped)
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
