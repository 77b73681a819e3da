"""Whether a checkpoint fits the model and optimizer it resumes, exactly (`check_fits`).

Resuming restores the optimizer's momentum and the scheduler's state along with the weights,
so a model whose shapes changed (another MODEL.NUM_CLASSES, another head width) cannot be
resumed: skipping the mismatched weights would leave momentum buffers of the old shapes,
and the first SGD step would fail inside torch. `check_fits` finds every difference first
and raises one `CheckpointError` naming the first few and the way out (start from the
weights with MODEL.WEIGHTS instead of --resume).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .checkpoint_files import CheckpointError

__all__ = ["check_fits"]


def check_fits(path: str, data: dict[str, Any], model: nn.Module, objs: dict[str, Any]) -> None:
    """Raise CheckpointError unless `data` fits `model` and the checkpointables `objs`
    exactly: same model keys and shapes, optimizers with the same parameter groups and
    per-parameter state shapes, schedulers of as many groups."""
    problems = _model_differences(data["model"], model)
    for key, obj in objs.items():
        if key in data and isinstance(data[key], dict):
            problems += [f"{key}: {p}" for p in _state_differences(data[key], obj)]
    if not problems:
        return
    shown = "; ".join(problems[:3]) + (
        f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
    )
    raise CheckpointError(
        f"checkpoint {path} does not fit this model and optimizer ({shown}): the config "
        "changed since it was saved (MODEL.NUM_CLASSES, a head's width?). To start from its "
        f"weights with a fresh optimizer, run without --resume and with MODEL.WEIGHTS {path} "
        "(layers that differ start afresh) and --overwrite or a new OUTPUT_DIR; to resume, "
        "use the config it was trained with"
    )


def _model_differences(state: Any, model: nn.Module) -> list[str]:
    """Keys of `state` (a state dict, maybe "module."-prefixed) that differ from `model`'s."""
    if not isinstance(state, dict):
        return [f"its model entry is a {type(state).__name__}, not a state dict"]
    state = {str(k).removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    out = []
    for key in sorted(set(state) | set(own)):
        if key not in own:
            out.append(f"{key} unknown to the model")
        elif key not in state:
            out.append(f"{key} missing in the file")
        elif not isinstance(state[key], torch.Tensor):
            out.append(f"{key} is not a tensor")
        elif tuple(state[key].shape) != tuple(own[key].shape):
            out.append(f"{key} has shape {tuple(state[key].shape)}, model {tuple(own[key].shape)}")
    return out


def _state_differences(saved: dict[str, Any], obj: Any) -> list[str]:
    """Differences between a saved optimizer / scheduler state and the live `obj`."""
    if isinstance(obj, torch.optim.Optimizer):
        return _optimizer_differences(saved, obj)
    optimizer = getattr(obj, "optimizer", None)
    if isinstance(optimizer, torch.optim.Optimizer) and "base_lrs" in saved:
        groups, saved_groups = len(optimizer.param_groups), len(saved["base_lrs"])
        if groups != saved_groups:
            return [f"{saved_groups} parameter groups, the optimizer has {groups}"]
    return []


def _optimizer_differences(saved: dict[str, Any], opt: torch.optim.Optimizer) -> list[str]:
    """Parameter groups (count, sizes) and per-parameter state shapes of `saved` vs `opt`."""
    groups = saved.get("param_groups")
    if not isinstance(groups, list):
        return ["no param_groups"]
    sizes = [len(g.get("params", [])) if isinstance(g, dict) else -1 for g in groups]
    own_sizes = [len(g["params"]) for g in opt.param_groups]
    if sizes != own_sizes:
        return [f"parameter groups of {sizes} parameters, the optimizer has {own_sizes}"]
    params = [p for g in opt.param_groups for p in g["params"]]
    out = []
    for index, entry in sorted((saved.get("state") or {}).items(), key=lambda kv: str(kv[0])):
        if not isinstance(index, int) or not 0 <= index < len(params):
            out.append(f"state of parameter {index!r}, which the optimizer does not have")
            continue
        for name, value in entry.items() if isinstance(entry, dict) else ():
            if (
                isinstance(value, torch.Tensor)
                and value.dim() > 0
                and value.shape != params[index].shape
            ):
                out.append(
                    f"{name} of parameter {index} has shape {tuple(value.shape)}, the "
                    f"parameter {tuple(params[index].shape)}"
                )
    return out
