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

Resuming (`Checkpointer.resume`) follows `sniper.engine.checkpoint_files`: the file named by
`last_checkpoint`, then the older ones, skipping unreadable files with a warning; the file
must fit the model and the optimizer exactly (same keys and shapes, same parameter groups),
else a `CheckpointError` says what differs and how to start from its weights instead.
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

from sniper.modeling.state_dict import LoadReport, load_model_state, read_checkpoint
from sniper.output_files import atomic_write

from .checkpoint_files import LAST_CHECKPOINT, CheckpointError, read_last_checkpoint, resume_order
from .checkpoint_fit import check_fits
from .launch import is_main_process

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "atomic_write",
    "get_rng_state",
    "load_eval_weights",
    "set_rng_state",
]

logger = logging.getLogger(__name__)


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
        self.loaded_path = ""  # the file the last successful `resume` loaded
        # what the last `load` / `resume` did with each model key (None: nothing loaded yet)
        self.last_report: LoadReport | None = None

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
        """Path of the latest checkpoint named by `last_checkpoint` ("" if none or unreadable)."""
        try:
            name = read_last_checkpoint(self.save_dir)
        except CheckpointError:
            return ""
        return os.path.join(self.save_dir, name) if name else ""

    def load(
        self,
        path: str,
        checkpointables: Iterable[str] | None = None,
        *,
        strict: bool = False,
        what: str = "checkpoint",
    ) -> dict[str, Any]:
        """Load `path` into the model and into the checkpointables named (default: all).

        A file holding a bare state dict (no "model" key) loads as model weights. Model
        keys are matched after stripping a "module." prefix. Not `strict`: missing,
        unexpected and shape-mismatched keys are logged (the latter skipped), not fatal
        (`sniper.modeling.state_dict.load_model_state`; its `LoadReport` is kept in
        `self.last_report`), but a file of which no tensor fits is a ValueError. `strict`
        (resuming): any difference of keys or shapes, and an optimizer / scheduler state of
        other parameter groups, is a `CheckpointError`, raised before anything is loaded.

        Returns:
            The entries of the file that were not consumed (e.g. "iteration").

        Raises:
            FileNotFoundError: `path` does not exist.
            ValueError: the file is unreadable, does not hold a dict, or fits nothing.
            CheckpointError: `strict` and the file does not fit (names the first keys).
        """
        data = read_checkpoint(path, what=what)
        return self._apply(path, data, checkpointables, strict=strict, what=what)

    def _apply(
        self,
        path: str,
        data: dict[str, Any],
        checkpointables: Iterable[str] | None,
        *,
        strict: bool,
        what: str = "checkpoint",
    ) -> dict[str, Any]:
        """Load the dict `data` read from `path` (see `load`)."""
        if "model" not in data:
            data = {"model": data}
        keys = list(self.checkpointables if checkpointables is None else checkpointables)
        if strict:
            check_fits(path, data, self.model, {k: self.checkpointables[k] for k in keys})
        self.last_report = load_model_state(
            self.model, data.pop("model"), source=f"{what} {path!r}"
        )
        for key in keys:
            if key in data:
                self.checkpointables[key].load_state_dict(data.pop(key))
            else:
                logger.warning("checkpoint %s has no %r entry; it keeps its state", path, key)
        return data

    def resume(self, checkpointables: Iterable[str] | None = None) -> dict[str, Any] | None:
        """Load the newest readable checkpoint of `save_dir`, strictly (see `load`).

        Tries the file named by `last_checkpoint`, then `model_final.pth`, then
        `model_<N>.pth` by decreasing N, with a warning for each one that is missing or
        unreadable. The path loaded is kept in `self.loaded_path`.

        Returns:
            The unconsumed entries of the file loaded, or None when `save_dir` holds no
            checkpoint (nor a `last_checkpoint`) at all.

        Raises:
            CheckpointError: checkpoints exist but none is readable (the message lists each
                with its reason), or the one read does not fit the model or optimizer.
        """
        order = resume_order(self.save_dir) if self.save_dir else []
        if not order:
            return None
        problems = []
        for path in order:
            try:
                data = read_checkpoint(path)
            except FileNotFoundError:
                reason = f"{LAST_CHECKPOINT} names {os.path.basename(path)}, which does not exist"
            except ValueError as err:
                reason = str(err)
            else:
                extra = self._apply(path, data, checkpointables, strict=True)
                self.loaded_path = path
                return extra
            logger.warning("cannot resume from %s: %s", path, reason)
            problems.append(reason)
        raise CheckpointError(
            f"no readable checkpoint in {self.save_dir} to resume from ({'; '.join(problems)}): "
            "delete the broken files, or train from scratch without --resume (with "
            "--overwrite, or another OUTPUT_DIR)"
        )

    def resume_or_load(self, path: str, *, resume: bool = True) -> dict[str, Any]:
        """Resume from `save_dir` if `resume` and it holds a checkpoint (everything is
        restored, `resume`); else load only the model weights from `path` ("" = nothing).

        Returns:
            The unconsumed entries of the loaded file ({} if nothing was loaded).
        """
        if resume:
            extra = self.resume()
            if extra is not None:
                return extra
            logger.info("no checkpoint in %s to resume from: starting from scratch", self.save_dir)
        if not path:
            return {}
        return self.load(path, checkpointables=[], what="MODEL.WEIGHTS file")


def load_eval_weights(model: nn.Module, output_dir: str, weights: str, *, resume: bool) -> str:
    """Load the weights that `--eval-only` evaluates into `model` (model only).

    With `resume`, the newest readable checkpoint of `output_dir` (strictly, see
    `Checkpointer.resume`), else (or when it holds none) the file `weights` (MODEL.WEIGHTS).

    Returns:
        The path loaded.

    Raises:
        CheckpointError: nothing to load (no checkpoint and no MODEL.WEIGHTS: evaluating a
            random model is refused), or the file is missing, unreadable or fits nothing.
    """
    checkpointer = Checkpointer(model, output_dir, save_to_disk=False)
    if resume and checkpointer.resume(checkpointables=[]) is not None:
        return checkpointer.loaded_path
    if not weights:
        where = f"no checkpoint in {output_dir or '(no OUTPUT_DIR)'} and " if resume else ""
        raise CheckpointError(
            f"--eval-only: {where}MODEL.WEIGHTS is empty: nothing to evaluate but a random "
            "model; give MODEL.WEIGHTS <file> (or --resume with the OUTPUT_DIR of a run)"
        )
    try:
        checkpointer.load(weights, checkpointables=[], what="MODEL.WEIGHTS file")
    except (FileNotFoundError, ValueError) as err:
        raise CheckpointError(str(err.args[0] if err.args else err)) from None
    return weights
