"""Checkpoints written atomically, detectron2-style (`model_0004999.pth`, `last_checkpoint`).

A checkpoint is one `torch.save`d dict: `"model"` (state dict of the unwrapped model), one
entry per registered checkpointable (`"optimizer"`, `"scheduler"`, `"grad_scaler"`, ...:
objects with `state_dict()` / `load_state_dict()`), plus any extra entries given to
`save()` (the trainer adds `"iteration"`, `"data_loader"` and `"rng_states"`). Every entry
is made of tensors, numbers, strings, lists, tuples and dicts, so files load with
`torch.load(weights_only=True)`.

Files are written to a temporary file in the same folder, fsynced, then moved over the
final name with `os.replace`: an interrupted save leaves the previous files untouched and no
partial checkpoint. `last_checkpoint` (a text file holding the latest checkpoint's file name)
is updated the same way, after the checkpoint is in place.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from sniper.modeling.state_dict import load_model_state, read_checkpoint
from sniper.output_files import atomic_write

from .launch import is_main_process

__all__ = ["Checkpointer", "atomic_write", "get_rng_state", "set_rng_state"]

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last_checkpoint"


def get_rng_state() -> dict[str, Any]:
    """RNG states of python `random`, numpy's global generator, torch CPU and CUDA."""
    # The legacy global generator is what third-party code draws from: save it as is.
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002
    np_state["state"]["key"] = np_state["state"]["key"].tolist()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np_state,
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states from `get_rng_state()` (CUDA only if saved and CUDA is available)."""
    random.setstate(_as_tuple(state["python"]))
    np_state = dict(state["numpy"])
    np_state["state"] = dict(np_state["state"])
    np_state["state"]["key"] = np.asarray(np_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(np_state)  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)


def _as_tuple(obj: Any) -> Any:
    """Lists back to tuples, recursively (python's random state must be nested tuples)."""
    if isinstance(obj, list | tuple):
        return tuple(_as_tuple(v) for v in obj)
    return obj


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel wrappers."""
    while isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
        model = model.module
    return model


class Checkpointer:
    """Save and load a model and its training state (module doc gives the format).

    Args:
        model: the model (a DDP wrapper is unwrapped).
        save_dir: folder of the checkpoints and of `last_checkpoint`.
        save_to_disk: write files; default: only on the main process.
        checkpointables: objects with `state_dict()` / `load_state_dict()` saved under
            their keyword (optimizer=..., scheduler=..., grad_scaler=...).
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: bool | None = None,
        **checkpointables: Any,
    ) -> None:
        self.model = _unwrap(model)
        self.save_dir = save_dir
        self.save_to_disk = is_main_process() if save_to_disk is None else save_to_disk
        self.checkpointables: dict[str, Any] = dict(checkpointables)

    def add_checkpointable(self, key: str, obj: Any) -> None:
        """Register one more object to save and load under `key`."""
        if key in self.checkpointables or key == "model":
            raise KeyError(f"checkpointable {key!r} is already registered")
        self.checkpointables[key] = obj

    def save(self, name: str, **extra: Any) -> str | None:
        """Write `<save_dir>/<name>.pth` atomically and point `last_checkpoint` at it.

        Returns:
            The path written, or None when this process does not write.
        """
        if not self.save_dir or not self.save_to_disk:
            return None
        data: dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(extra)
        os.makedirs(self.save_dir, exist_ok=True)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        atomic_write(path, lambda f: torch.save(data, f))
        atomic_write(
            os.path.join(self.save_dir, LAST_CHECKPOINT),
            lambda f: f.write(basename.encode("utf-8")),
        )
        logger.info("saved checkpoint %s", path)
        return path

    def has_checkpoint(self) -> bool:
        """Whether `last_checkpoint` exists in `save_dir`."""
        return bool(self.save_dir) and os.path.isfile(os.path.join(self.save_dir, LAST_CHECKPOINT))

    def get_checkpoint_file(self) -> str:
        """Path of the latest checkpoint named by `last_checkpoint` ("" if none)."""
        try:
            with open(os.path.join(self.save_dir, LAST_CHECKPOINT), encoding="utf-8") as f:
                name = f.read().strip()
        except OSError:
            return ""
        return os.path.join(self.save_dir, name)

    def load(self, path: str, checkpointables: Iterable[str] | None = None) -> dict[str, Any]:
        """Load `path` into the model and into the checkpointables named (default: all).

        A file holding a bare state dict (no "model" key) loads as model weights. Model
        keys are matched after stripping a "module." prefix; missing, unexpected and
        shape-mismatched keys are logged (the latter skipped), not fatal
        (`sniper.modeling.state_dict.load_model_state`).

        Returns:
            The entries of the file that were not consumed (e.g. "iteration").

        Raises:
            FileNotFoundError: `path` does not exist.
            ValueError: the file does not hold a dict.
        """
        data = read_checkpoint(path)
        if "model" not in data:
            data = {"model": data}
        load_model_state(self.model, data.pop("model"))
        keys = self.checkpointables.keys() if checkpointables is None else checkpointables
        for key in keys:
            if key in data:
                self.checkpointables[key].load_state_dict(data.pop(key))
            else:
                logger.warning("checkpoint %s has no %r entry; it keeps its state", path, key)
        return data

    def resume_or_load(self, path: str, *, resume: bool = True) -> dict[str, Any]:
        """Resume from `last_checkpoint` if `resume` and it exists (everything is restored);
        else load only the model weights from `path` ("" = nothing).

        Returns:
            The unconsumed entries of the loaded file ({} if nothing was loaded).
        """
        if resume and self.has_checkpoint():
            return self.load(self.get_checkpoint_file())
        if not path:
            return {}
        return self.load(path, checkpointables=[])
