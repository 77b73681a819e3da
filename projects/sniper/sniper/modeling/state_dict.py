"""Detector weights: read a checkpoint file and load a state dict into a model, leniently.

Used by the predictor (`sniper.inference.predictor`, through `load_model_weights`) and by the
training checkpointer (`sniper.engine.checkpoint.Checkpointer`, through `read_checkpoint` and
`load_model_state`), so that both load the same way:

- files are read with ``torch.load(path, map_location="cpu", weights_only=True)`` and must
  hold a dict: a training checkpoint (the state dict under ``"model"``, other entries such
  as ``"optimizer"`` or ``"iteration"``) or a bare state dict;
- a leading ``"module."`` (DistributedDataParallel) is stripped from every key;
- keys missing in the file, keys unknown to the model and shape-mismatched keys (skipped)
  are logged as warnings, not errors.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["load_model_state", "load_model_weights", "read_checkpoint"]

logger = logging.getLogger(__name__)


def read_checkpoint(path: str, what: str = "checkpoint") -> dict[str, Any]:
    """The dict saved in ``path`` (CPU tensors, ``weights_only=True``).

    Args:
        path: a file written by ``torch.save``.
        what: how the error messages name the file (e.g. "MODEL.WEIGHTS file").

    Raises:
        FileNotFoundError: naming ``path`` when it is not a file.
        ValueError: the file does not hold a dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r} not found")
    logger.info("loading %s %s", what, path)
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict, got {type(data).__name__}")
    return data


def load_model_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Load ``state`` into ``model`` non-strictly (module doc: prefix, warnings).

    Args:
        model: the model itself, not a DistributedDataParallel wrapper.
        state: parameter and buffer tensors by name (``model.state_dict()`` keys, possibly
            with a ``"module."`` prefix).
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    for key in list(state):
        if key in own and tuple(own[key].shape) != tuple(state[key].shape):
            logger.warning(
                "skip %s: checkpoint shape %s != model shape %s",
                key,
                tuple(state[key].shape),
                tuple(own[key].shape),
            )
            del state[key]
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        logger.warning("keys missing in the checkpoint: %s", ", ".join(result.missing_keys))
    if result.unexpected_keys:
        logger.warning(
            "checkpoint keys unknown to the model: %s", ", ".join(result.unexpected_keys)
        )


def load_model_weights(model: nn.Module, path: str) -> None:
    """Load detector weights from ``path`` into ``model`` (other checkpoint entries ignored).

    Accepts a training checkpoint (a dict with a ``"model"`` state dict, as written by
    ``sniper.engine.checkpoint.Checkpointer``) or a bare state dict.

    Raises:
        FileNotFoundError: naming ``path`` when it is not a file.
        ValueError: the file does not hold a dict.
    """
    data = read_checkpoint(path, what="MODEL.WEIGHTS file")
    load_model_state(model, data["model"] if "model" in data else data)
