"""Detectron / Caffe2 ``.pkl`` weight files, read without executing code.

Detectron (the Caffe2 one) saves weights as a plain pickle of numpy arrays, in one of two
forms:

- a detector checkpoint ``{"blobs": {name: ndarray}, "cfg": <YAML string>, ...}``
  (``model_final.pkl``); entries other than ``"blobs"`` are ignored (logged);
- a flat ``{name: ndarray}``: the ImageNet trunks (``R-50.pkl``, ``R-101.pkl``); entries whose
  name starts with ``"__"`` (metadata such as ``"__author__"``) are ignored (logged).

Most files were written by Python 2, so they are read with ``encoding="latin1"`` (Python-2
``str`` array buffers decode to the same bytes). The unpickler resolves only the globals a
plain pickle of numpy arrays needs (`ALLOWED_GLOBALS`: array and dtype reconstruction, numpy
scalars, ``_codecs.encode`` which Python 3 protocol-2 pickles use for bytes, and
``collections.OrderedDict``); any other global (``os.system``, a class of some package) is
refused before anything is built, with a `DetectronPickleError` naming the file and the
global. Every blob must be a numeric ndarray (bool, int, uint, float); ``<name>_momentum``
blobs (Caffe2's SGD momentum, saved by Detectron beside each trained parameter) are dropped
and listed in `DetectronFile.momentum`.

This module imports numpy only (no torch): `sniper.modeling.detectron_weights` maps the blobs
onto a model.
"""

from __future__ import annotations

import codecs
import logging
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ALLOWED_GLOBALS",
    "DETECTRON_SUFFIX",
    "DetectronFile",
    "DetectronPickleError",
    "is_detectron_file",
    "read_detectron_pkl",
]

logger = logging.getLogger(__name__)

DETECTRON_SUFFIX = ".pkl"
MOMENTUM_SUFFIX = "_momentum"


def _numpy_core(name: str) -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    return getattr(multiarray, name)


# (module, name) -> a callable returning the object. `numpy.core.multiarray` (numpy 1.x and
# Python-2 files) and `numpy._core.multiarray` (numpy 2) are the same functions.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_core("_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_core("_reconstruct"),
    ("numpy.core.multiarray", "scalar"): lambda: _numpy_core("scalar"),
    ("numpy._core.multiarray", "scalar"): lambda: _numpy_core("scalar"),
    ("_codecs", "encode"): lambda: codecs.encode,
    ("collections", "OrderedDict"): lambda: OrderedDict,
}


class DetectronPickleError(ValueError):
    """A ``.pkl`` file that is not a plain pickle of numpy arrays (message names the file)."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only `ALLOWED_GLOBALS` (module doc)."""

    def __init__(self, file: Any, path: str, what: str) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path
        self._what = what

    def find_class(self, module: str, name: str) -> Any:
        """The allowed global ``module.name``; anything else is a `DetectronPickleError`."""
        make = ALLOWED_GLOBALS.get((module, name))
        if make is None:
            raise DetectronPickleError(
                f"{self._what} {self._path!r} refers to the global {module}.{name}, "
                "which a plain pickle of numpy arrays never needs: refused (not loaded, "
                "nothing executed)"
            )
        return make()

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids (torch files use them) are refused."""
        raise DetectronPickleError(
            f"{self._what} {self._path!r} holds a persistent id {pid!r}: it is "
            "not a plain pickle (a torch.save file? use a .pth name for those)"
        )


@dataclass
class DetectronFile:
    """The blobs of a Detectron ``.pkl`` file.

    path: the file; blobs: name -> numeric ndarray (Caffe2 layouts: conv weights
    (C_out, C_in, kh, kw), fc weights (out, in)), ``_momentum`` blobs removed; momentum:
    names of the removed ``_momentum`` blobs, sorted; ignored: other top-level entries that
    are not blobs (``"cfg"``, ``"__author__"``), sorted.
    """

    path: str
    blobs: dict[str, np.ndarray]
    momentum: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def is_detectron_file(source: str) -> bool:
    """Whether a weights path names a Detectron pickle (ends in ``.pkl``, any case)."""
    return source.lower().endswith(DETECTRON_SUFFIX)


def _unpickle(path: str, what: str) -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} not found")
    with open(path, "rb") as f:
        try:
            return _NumpyOnlyUnpickler(f, path, what).load()
        except DetectronPickleError:
            raise
        except Exception as err:  # truncated / garbage bytes raise many types
            first = (str(err).strip().splitlines() or ["(no message)"])[0]
            raise DetectronPickleError(
                f"{what} {path!r} is not a readable pickle: {type(err).__name__}: {first}"
            ) from err


def _split_top(data: Any, path: str, what: str) -> tuple[dict[Any, Any], list[str]]:
    """The blob dict and the names of the other top-level entries (module doc)."""
    if not isinstance(data, dict):
        raise DetectronPickleError(
            f"{what} {path!r} holds a {type(data).__name__}, not a dict of blobs "
            '({"blobs": {name: array}} or {name: array})'
        )
    if "blobs" in data:
        blobs = data["blobs"]
        if not isinstance(blobs, dict):
            raise DetectronPickleError(
                f"{what} {path!r}: its 'blobs' entry is a {type(blobs).__name__}, not a dict"
            )
        return blobs, sorted(str(k) for k in data if k != "blobs")
    ignored = sorted(k for k in data if isinstance(k, str) and k.startswith("__"))
    return {k: v for k, v in data.items() if k not in ignored}, ignored


def read_detectron_pkl(path: str, what: str = "Detectron weights file") -> DetectronFile:
    """Read the blobs of the Detectron pickle ``path`` (module doc), safely.

    Args:
        path: the ``.pkl`` file.
        what: how error messages name the file (e.g. "MODEL.WEIGHTS file").

    Returns:
        The `DetectronFile` (numeric blobs by name, momentum blobs dropped).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        DetectronPickleError: a refused global, an unreadable pickle, not a dict, a blob name
            that is not a string or a blob that is not a numeric ndarray (named).
    """
    data = _unpickle(path, what)
    raw, ignored = _split_top(data, path, what)
    blobs: dict[str, np.ndarray] = {}
    momentum: list[str] = []
    for name, value in raw.items():
        if not isinstance(name, str):
            raise DetectronPickleError(f"{what} {path!r}: blob name {name!r} is not a string")
        if name.endswith(MOMENTUM_SUFFIX):
            momentum.append(name)
            continue
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise DetectronPickleError(
                f"{what} {path!r}: blob {name!r} is a {kind}, not a numeric numpy array"
            )
        blobs[name] = value
    if ignored:
        logger.info("%s %s: ignored entries that are not blobs: %s", what, path, ", ".join(ignored))
    if momentum:
        logger.info("%s %s: dropped %d _momentum blobs", what, path, len(momentum))
    return DetectronFile(path, blobs, sorted(momentum), ignored)
