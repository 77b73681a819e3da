"""Detector weights: read a checkpoint file and load a state dict into a model, leniently.

Used by the predictor (`sniper.inference.predictor`, through `load_model_weights`) and by the
training checkpointer (`sniper.engine.checkpoint.Checkpointer`, through `read_checkpoint` and
`load_model_state`), so that both load the same way:

- files are read with ``torch.load(path, map_location="cpu", weights_only=True)`` and must
  hold a dict: a training checkpoint (the state dict under ``"model"``, other entries such
  as ``"optimizer"`` or ``"iteration"``) or a bare state dict;
- a leading ``"module."`` (DistributedDataParallel) is stripped from every key;
- ``torchvision://NAME`` instead of a path reads torchvision's detection weights from its
  cache, and torchvision detection state dicts are mapped onto our names
  (`sniper.modeling.torchvision_detection`);
- keys missing in the file, keys unknown to the model and shape-mismatched keys (skipped,
  so those parameters keep their fresh initialization: a class predictor of another
  NUM_CLASSES is re-initialized) are not errors: `load_model_state` logs a table of loaded /
  missing / unexpected / shape-mismatched keys and returns it as a `LoadReport`;
- but a file of which *no* tensor fits the model (a classifier file, another backbone, an
  empty dict) is a `ValueError`: loading it would leave a random model;
- a file that torch cannot read (truncated, empty, random bytes, or a pickle that
  ``weights_only`` refuses) is a `ValueError` naming the file and the reason;
- a ``.pkl`` path is a Detectron / Caffe2 file: read without executing code
  (`sniper.modeling.detectron_pkl`), its blobs mapped onto the model
  (`sniper.modeling.detectron_weights`); the report lists its unused blobs as unexpected
  (by blob name), its dropped ``_momentum`` blobs and non-blob entries as dropped, and a
  blob of another shape than its parameter is a `ValueError` naming both, except for the
  class predictor (``cls_score``, ``bbox_pred``: another NUM_CLASSES), which is skipped.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .detectron_pkl import DetectronFile, is_detectron_file, read_detectron_pkl
from .detectron_weights import convert_detectron_blobs, detector_blob_target, model_warnings
from .torchvision_detection import (
    convert_torchvision_state,
    fetch_torchvision_detection,
    is_torchvision_name,
)

__all__ = [
    "LoadReport",
    "load_detectron_state",
    "load_model_state",
    "load_model_weights",
    "read_checkpoint",
]

logger = logging.getLogger(__name__)


def _grouped(keys: list[str]) -> str:
    """Keys grouped by module: ``a.b.{bias,weight}``, sorted."""
    leaves: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        module, _, leaf = key.rpartition(".")
        leaves[module].append(leaf)
    parts = []
    for module in sorted(leaves):
        names = sorted(leaves[module])
        leaf = names[0] if len(names) == 1 else "{" + ",".join(names) + "}"
        parts.append(f"{module}.{leaf}" if module else leaf)
    return ", ".join(parts)


@dataclass
class LoadReport:
    """What `load_model_state` did with each key (names after conversion, sorted).

    loaded: keys copied into the model; missing: model keys the file lacks (they keep their
    initialization); unexpected: file keys the model lacks (ignored; Detectron blob names
    for a ``.pkl``); mismatched: keys of both whose shapes differ (skipped), as ``(key, file
    shape, model shape)``; dropped: file entries left out on purpose (a Detectron file's
    ``_momentum`` blobs and non-blob entries such as ``cfg``).
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def table(self) -> str:
        """A text table: one row per status with the number of tensors and their names
        (loaded keys summarized by their top two name components)."""
        tops = sorted({".".join(k.split(".")[:2]) + ".*" for k in self.loaded})
        rows = [
            ("loaded", len(self.loaded), ", ".join(tops)),
            ("missing", len(self.missing), _grouped(self.missing)),
            ("unexpected", len(self.unexpected), _grouped(self.unexpected)),
            (
                "shape-mismatched",
                len(self.mismatched),
                ", ".join(
                    f"{k} (file {tuple(a)}, model {tuple(b)})" for k, a, b in self.mismatched
                ),
            ),
        ]
        if self.dropped:
            rows.append(("dropped", len(self.dropped), _grouped(self.dropped)))
        width = max(len(r[0]) for r in rows)
        lines = [f"{'status':<{width}} | tensors | keys"]
        lines += [f"{name:<{width}} | {count:>7} | {keys or '-'}" for name, count, keys in rows]
        return "\n".join(lines)


def read_checkpoint(path: str, what: str = "checkpoint") -> dict[str, Any]:
    """The dict saved in ``path`` (CPU tensors, ``weights_only=True``); for a
    ``torchvision://NAME`` path, ``{"model": <torchvision's state dict>}`` from its cache;
    for a Detectron ``.pkl``, ``{"model": DetectronFile}`` (its blobs, read safely).

    Args:
        path: a file written by ``torch.save``, or ``torchvision://NAME``.
        what: how the error messages name the file (e.g. "MODEL.WEIGHTS file").

    Raises:
        FileNotFoundError: naming ``path`` when it is not a file (or not in the cache).
        ValueError: the file is not readable by torch (the message names the file and the
            reason) or does not hold a dict; an unknown torchvision name; a Detectron file
            that is not a plain pickle of numeric arrays
            (`sniper.modeling.detectron_pkl.DetectronPickleError`).
    """
    if is_torchvision_name(path):
        return {"model": fetch_torchvision_detection(path)}
    if is_detectron_file(path):
        return {"model": read_detectron_pkl(path, what=what)}
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} not found")
    logger.info("loading %s %s", what, path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE as err:
        raise ValueError(f"{what} {path!r} is not readable: {_reason(err)}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path!r}: expected a dict, got {type(data).__name__}")
    return data


# What torch.load raises on a truncated, empty or garbage file, or on a pickle that
# weights_only refuses (UnpicklingError); OSError covers read errors of the file itself.
_UNREADABLE = (
    RuntimeError,
    EOFError,
    OSError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    UnicodeDecodeError,
)


def _reason(err: BaseException) -> str:
    """The first line of an exception, with its type (one line for a log or an error)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else '(no message)'}"


def load_model_state(
    model: nn.Module, state: dict[str, Tensor], source: str = "checkpoint"
) -> LoadReport:
    """Load ``state`` into ``model`` non-strictly (module doc: prefix, torchvision names,
    the logged table).

    Args:
        model: the model itself, not a DistributedDataParallel wrapper.
        state: parameter and buffer tensors by name (``model.state_dict()`` keys, possibly
            with a ``"module."`` prefix, or torchvision detection names), or the
            `DetectronFile` of a ``.pkl`` (`load_detectron_state`).
        source: how error messages name the file (e.g. "MODEL.WEIGHTS file 'x.pth'").

    Returns:
        The `LoadReport` (also logged as a table; a warning when anything is missing or
        skipped).

    Raises:
        ValueError: ``state`` is not a dict of tensors, or no tensor of it fits the model
            (same name and shape) while the model has some: nothing would be loaded.
    """
    if isinstance(state, DetectronFile):
        return load_detectron_state(model, state, source)
    if not isinstance(state, dict):
        raise ValueError(f"{source}: expected a state dict, got {type(state).__name__}")
    bad = next(
        (k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor)),
        None,
    )
    if bad is not None:
        raise ValueError(
            f"{source} is not a state dict: its entry {bad!r} "
            f"({type(state[bad]).__name__}) is not a tensor named by a string"
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = convert_torchvision_state(state, model)
    own = model.state_dict()
    _check_overlap(state, own, source)
    report = LoadReport()
    for key in list(state):
        if key in own and tuple(own[key].shape) != tuple(state[key].shape):
            report.mismatched.append((key, tuple(state[key].shape), tuple(own[key].shape)))
            logger.warning(
                "skip %s: checkpoint shape %s != model shape %s (keeps its initialization)",
                key,
                tuple(state[key].shape),
                tuple(own[key].shape),
            )
            del state[key]
    result = model.load_state_dict(state, strict=False)
    skipped = {key for key, _, _ in report.mismatched}
    report.missing = sorted(set(result.missing_keys) - skipped)
    report.unexpected = sorted(result.unexpected_keys)
    report.loaded = sorted(k for k in state if k in own)
    report.mismatched.sort()
    logger.info("weights loaded into %s:\n%s", type(model).__name__, report.table())
    if report.missing or report.unexpected:
        logger.warning(
            "%d keys missing in the checkpoint, %d unknown to the model (see the table above)",
            len(report.missing),
            len(report.unexpected),
        )
    return report


_PREDICTOR = "roi_heads.box_predictor."


def load_detectron_state(model: nn.Module, file: DetectronFile, source: str) -> LoadReport:
    """Load the blobs of a Detectron file into the detector ``model`` (module doc).

    Returns:
        The `LoadReport`: unexpected = unused blob names; mismatched = predictor keys of
        another shape (``(key, blob shape, model shape)``), skipped; dropped = the file's
        ``_momentum`` blobs and non-blob entries. Logged as a table, with the warnings of
        `sniper.modeling.detectron_weights.model_warnings`.

    Raises:
        ValueError: a blob outside the class predictor has another shape than its
            parameter (every such blob named with both shapes), or no blob fits the model.
    """
    converted = convert_detectron_blobs(file, model, detector_blob_target(model))
    wrong = [m for m in converted.mismatched if not m[1].startswith(_PREDICTOR)]
    if wrong:
        raise ValueError(
            f"{source} does not fit this model (another depth, width or head?): "
            + "; ".join(f"blob {b!r} has shape {s}, {k} expects {o}" for b, k, s, o in wrong)
        )
    if not converted.state:
        raise ValueError(
            f"{source} has no blob that fits this model ({len(file.blobs)} blobs, e.g. "
            f"{', '.join(sorted(file.blobs)[:3]) or 'none'})"
        )
    report = LoadReport(unexpected=converted.unused, dropped=sorted(file.momentum + file.ignored))
    for blob, key, shape, own in converted.mismatched:
        logger.warning(
            "skip Detectron blob %s -> %s: shape %s != model shape %s", blob, key, shape, own
        )
        report.mismatched.append((key, shape, own))
    result = model.load_state_dict(converted.state, strict=False)
    skipped = {key for key, _, _ in report.mismatched}
    report.missing = sorted(
        k for k in set(result.missing_keys) - skipped if not k.endswith(".num_batches_tracked")
    )
    report.loaded = sorted(converted.state)
    logger.info("Detectron blobs loaded into %s:\n%s", type(model).__name__, report.table())
    for warning in model_warnings(model):
        logger.warning("%s: %s", source, warning)
    return report


def _check_overlap(state: dict[str, Tensor], own: dict[str, Tensor], source: str) -> None:
    """Raise ValueError when no tensor of ``state`` fits ``own`` by name and shape."""
    if not own or any(k in own and tuple(own[k].shape) == tuple(v.shape) for k, v in state.items()):
        return
    same_name = sorted(k for k in state if k in own)
    file_keys = ", ".join(sorted(state)[:3]) or "none"
    detail = (
        f"the {len(same_name)} keys of the same name all differ in shape"
        if same_name
        else f"it has {len(state)} keys (e.g. {file_keys}), the model {len(own)} "
        f"(e.g. {', '.join(sorted(own)[:3])})"
    )
    raise ValueError(
        f"{source} has no tensor that fits this model ({detail}): it is not a weights file "
        "of this detector (a classifier, another backbone?)"
    )


def load_model_weights(model: nn.Module, path: str) -> LoadReport:
    """Load detector weights from ``path`` into ``model`` (other checkpoint entries ignored).

    Accepts a training checkpoint (a dict with a ``"model"`` state dict, as written by
    ``sniper.engine.checkpoint.Checkpointer``), a bare state dict (ours or a torchvision
    detector's) or ``torchvision://NAME`` (module doc).

    Returns:
        The `LoadReport` of `load_model_state`.

    Raises:
        FileNotFoundError: naming ``path`` when it is not a file.
        ValueError: the file is unreadable, does not hold a dict, or none of its tensors
            fits the model.
    """
    data = read_checkpoint(path, what="MODEL.WEIGHTS file")
    state = data["model"] if "model" in data else data
    return load_model_state(model, state, source=f"MODEL.WEIGHTS file {path!r}")
