"""Output files of the tools and the engine, written so that nothing is lost or half-written.

A leaf module (no torch, nothing of `sniper` above it):

- `check_output_dir`: the output folder exists or can be created, is a folder and is writable
  (a temporary file is created and removed), checked *before* any work is done;
- `atomic_write`: write a temporary file next to the target, fsync, then ``os.replace`` it
  over the target, so a reader (or a Ctrl-C) never sees a partial file;
- `atomic_write_json`, `atomic_write_image`: the same for a json document and an image;
- `ResultsWriter`: a json list of results that grows image by image and is rewritten
  atomically at most every ``every_s`` seconds (and always after the first image and at
  `close`), so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

import cv2
import numpy as np

__all__ = [
    "OutputDirError",
    "ResultsWriter",
    "atomic_write",
    "atomic_write_image",
    "atomic_write_json",
    "check_output_dir",
]


class OutputDirError(ValueError):
    """The output folder cannot be used (the message names it and why)."""


def check_output_dir(path: str, flag: str = "--output") -> str:
    """Create ``path`` if needed and check that files can be written in it.

    Args:
        path: the output folder.
        flag: how the user gave it, for the message (e.g. ``"--output"``).

    Returns:
        ``path`` unchanged.

    Raises:
        OutputDirError: one line naming ``flag``, ``path`` and the reason: empty, names a
            regular file (or anything else that is not a folder), cannot be created, or is
            not writable.
    """
    if not path:
        raise OutputDirError(f"{flag}: the output folder name is empty")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputDirError(f"{flag} {path!r}: exists and is not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise OutputDirError(
            f"{flag} {path!r}: cannot create the folder ({err.strerror or err})"
        ) from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".write_probe.", suffix=".tmp", dir=path)
    except OSError as err:
        raise OutputDirError(
            f"{flag} {path!r}: the folder is not writable ({err.strerror or err})"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return path


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(f)` on a temporary file next to `path`, then rename it to `path`.

    On any exception (including KeyboardInterrupt) the temporary file is removed, `path` is
    left as it was and the exception propagates.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str, obj: Any, indent: int | None = None) -> None:
    """``json.dump(obj)`` (UTF-8) to ``path`` through `atomic_write`."""
    data = json.dumps(obj, indent=indent).encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def atomic_write_image(path: str, image_bgr: np.ndarray) -> None:
    """Encode ``image_bgr`` (uint8 ``(H, W, 3)`` BGR, as ``cv2.imwrite``) in the format of
    ``path``'s extension and write it through `atomic_write`.

    Raises:
        ValueError: the extension is not one OpenCV can encode, naming ``path``.
        OSError: the file cannot be written.
    """
    ext = os.path.splitext(path)[1]
    try:
        ok, buf = cv2.imencode(ext, image_bgr)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"cannot encode an image as {ext!r} for {path!r}")
    data = buf.tobytes()
    atomic_write(path, lambda f: f.write(data))


class ResultsWriter:
    """A json list on disk that grows as results come, rewritten atomically.

    The file always holds valid json: the results of every image added up to the last
    rewrite. Rewrites happen after the first `add`, then when ``every_s`` seconds have passed
    since the last one, and at `close` (call it in a ``finally``, also on Ctrl-C).

    Args:
        path: the json file (e.g. ``out/results.json``); written at once as ``[]``.
        every_s: minimum seconds between two rewrites (0 = after every image).
    """

    def __init__(self, path: str, every_s: float = 5.0) -> None:
        if not every_s >= 0:
            raise ValueError(f"every_s must be >= 0 seconds, got {every_s!r}")
        self.path = path
        self.every_s = float(every_s)
        self.results: list[dict[str, Any]] = []
        self.images = 0  # images whose results were added
        self.saved_images = 0  # images whose results are on disk
        self._last = 0.0
        self.flush()

    def add(self, results: Iterable[dict[str, Any]]) -> None:
        """Append the results of one image; rewrite the file when it is due."""
        self.results.extend(results)
        self.images += 1
        if not self.saved_images or time.monotonic() - self._last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Rewrite the file now with every result added so far."""
        atomic_write_json(self.path, self.results)
        self.saved_images = self.images
        self._last = time.monotonic()

    def close(self) -> None:
        """Final rewrite (when anything changed since the last one)."""
        if self.saved_images != self.images or not os.path.exists(self.path):
            self.flush()
