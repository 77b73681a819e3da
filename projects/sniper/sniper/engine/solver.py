"""Optimizer, learning-rate schedule, gradient clipping and mixed-precision settings.

The LR of iteration `i` (0-based) is `base_lr * multiplier(i / max_iter)`, where the
multiplier is an fvcore `ParamScheduler`: a linear warm-up from `warmup_factor` to 1 over
`warmup_iters`, then a multi-step decay by `gamma` at each of `steps`. `LRMultiplier` wraps
it into a torch `LRScheduler` that is stepped once after every iteration, so its state
(`last_epoch` = next iteration) is saved and restored by the checkpointer.

Weight decay: as detectron2's defaults, parameters of normalization layers (BatchNorm,
GroupNorm, LayerNorm, SwitchNorm2d, ... affine weights and biases) get `weight_decay_norm` (0
by default); every other trainable parameter, biases included, gets `weight_decay`. The
importance logits of Switchable Normalization (`SwitchNorm2d.mean_weight` / `var_weight`)
form a group of their own with SOLVER.SN_IMPORTANCE_WEIGHT_DECAY and a learning rate of
SOLVER.SN_IMPORTANCE_LR_FACTOR x the base LR (separate options, as in the paper's code).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from fvcore.common.config import CfgNode
from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
)
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from sniper.modeling.switchable_norm import SwitchNorm2d

__all__ = [
    "AmpSettings",
    "LRMultiplier",
    "build_lr_scheduler",
    "build_optimizer",
    "clip_gradients",
    "make_sgd",
    "resolve_amp",
    "warmup_multistep_schedule",
]

logger = logging.getLogger(__name__)

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    SwitchNorm2d,
)
_SN_IMPORTANCE = ("mean_weight", "var_weight")


def _is_norm(module: nn.Module) -> bool:
    """BatchNorm (incl. SyncBatchNorm), GroupNorm, LayerNorm and LocalResponseNorm layers.

    torchvision's FrozenBatchNorm2d holds buffers only, so it never reaches the optimizer.
    """
    return isinstance(module, _NORM_TYPES)


def make_sgd(
    model: nn.Module,
    base_lr: float,
    momentum: float,
    weight_decay: float,
    weight_decay_norm: float = 0.0,
    importance_weight_decay: float = 0.0,
    importance_lr_factor: float = 1.0,
) -> torch.optim.SGD:
    """SGD over the trainable parameters of `model`, in up to three groups: the rest, norm
    affine parameters, and SN importance logits (lr ``base_lr * importance_lr_factor``).

    Each parameter appears once even if shared between modules. Groups without parameters
    are left out.
    """
    seen: set[int] = set()
    norm_params: list[nn.Parameter] = []
    other_params: list[nn.Parameter] = []
    importance: list[nn.Parameter] = []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if isinstance(module, SwitchNorm2d) and name in _SN_IMPORTANCE:
                importance.append(param)
            else:
                (norm_params if _is_norm(module) else other_params).append(param)
    groups = [
        {"params": other_params, "weight_decay": weight_decay},
        {"params": norm_params, "weight_decay": weight_decay_norm},
        {
            "params": importance,
            "weight_decay": importance_weight_decay,
            "lr": base_lr * importance_lr_factor,
        },
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.SGD(groups, lr=base_lr, momentum=momentum)


def build_optimizer(cfg: CfgNode, model: nn.Module) -> torch.optim.SGD:
    """SGD from SOLVER.BASE_LR / MOMENTUM / WEIGHT_DECAY (no decay on norm parameters) and
    SOLVER.SN_IMPORTANCE_WEIGHT_DECAY / SN_IMPORTANCE_LR_FACTOR (module doc)."""
    return make_sgd(
        model,
        cfg.SOLVER.BASE_LR,
        cfg.SOLVER.MOMENTUM,
        cfg.SOLVER.WEIGHT_DECAY,
        0.0,
        cfg.SOLVER.SN_IMPORTANCE_WEIGHT_DECAY,
        cfg.SOLVER.SN_IMPORTANCE_LR_FACTOR,
    )


def warmup_multistep_schedule(
    max_iter: int,
    steps: Sequence[int],
    gamma: float,
    warmup_iters: int,
    warmup_factor: float,
) -> ParamScheduler:
    """LR multiplier as a function of `where = iteration / max_iter` (see module doc).

    Steps outside `(0, max_iter)` are dropped with a warning; warm-up is clamped to
    `max_iter - 1` iterations and skipped when it is 0.
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    kept = [int(s) for s in steps if 0 < int(s) < max_iter]
    if len(kept) != len(steps):
        logger.warning("LR steps %s outside (0, %d) are ignored", list(steps), max_iter)
    decay: ParamScheduler
    if kept:
        values = [gamma**k for k in range(len(kept) + 1)]
        decay = MultiStepParamScheduler(values, num_updates=max_iter, milestones=kept)
    else:
        decay = ConstantParamScheduler(1.0)
    # fvcore schedulers take where in [0, 1): the last iteration is max_iter - 1.
    warmup_iters = min(int(warmup_iters), max_iter - 1)
    if warmup_iters <= 0:
        return decay
    length = warmup_iters / max_iter
    warmup = LinearParamScheduler(warmup_factor * decay(0.0), decay(length))
    return CompositeParamScheduler(
        [warmup, decay], lengths=[length, 1.0 - length], interval_scaling=["rescaled", "fixed"]
    )


class LRMultiplier(LRScheduler):
    """torch LRScheduler setting `lr = base_lr * multiplier(last_epoch / max_iter)`.

    Step it once after each iteration; `last_epoch` is then the next iteration's index.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        multiplier: ParamScheduler,
        max_iter: int,
        last_iter: int = -1,
    ) -> None:
        self._multiplier = multiplier
        self._max_iter = int(max_iter)
        super().__init__(optimizer, last_epoch=last_iter)

    def state_dict(self) -> dict:
        """Only the position and base LRs: the multiplier is rebuilt from the config."""
        return {"base_lrs": self.base_lrs, "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the position and set the optimizer's LRs to it (so the order in which
        optimizer and scheduler are restored does not matter)."""
        super().load_state_dict(state_dict)
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = lrs

    def get_lr(self) -> list[float]:
        """Learning rate of every param group at iteration `last_epoch` (after the last
        iteration, the last iteration's LR)."""
        where = min(self.last_epoch, self._max_iter - 1) / self._max_iter
        multiplier = self._multiplier(where)
        return [base_lr * multiplier for base_lr in self.base_lrs]


def build_lr_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer) -> LRMultiplier:
    """Warm-up + multi-step schedule from SOLVER.MAX_ITER / STEPS / GAMMA / WARMUP_*."""
    sched = warmup_multistep_schedule(
        cfg.SOLVER.MAX_ITER,
        cfg.SOLVER.STEPS,
        cfg.SOLVER.GAMMA,
        cfg.SOLVER.WARMUP_ITERS,
        cfg.SOLVER.WARMUP_FACTOR,
    )
    return LRMultiplier(optimizer, sched, cfg.SOLVER.MAX_ITER)


def clip_gradients(
    params: Iterable[torch.Tensor], clip_type: str, clip_value: float
) -> float | None:
    """Clip gradients in place: total L2 norm ("norm") or each element ("value").

    Returns:
        The total gradient norm before clipping for "norm", None for "value".
    """
    params = [p for p in params if p.grad is not None]
    if clip_type == "norm":
        return float(torch.nn.utils.clip_grad_norm_(params, clip_value))
    if clip_type == "value":
        torch.nn.utils.clip_grad_value_(params, clip_value)
        return None
    raise ValueError(f'clip_type must be "norm" or "value", got {clip_type!r}')


@dataclass(frozen=True)
class AmpSettings:
    """Resolved mixed precision: autocast on `device_type` with `dtype`; GradScaler or not."""

    enabled: bool
    dtype: torch.dtype
    use_scaler: bool
    device_type: str


def resolve_amp(enabled: bool, dtype_name: str, device_type: str) -> AmpSettings:
    """Mixed precision actually used for SOLVER.AMP.ENABLED / DTYPE on `device_type`.

    CUDA: float16 with a GradScaler, or bfloat16 without one (AMP is turned off with a
    warning if the GPU lacks bfloat16). CPU: bfloat16 autocast; float16 is turned off with a
    warning (CPU float16 autocast is slow and has no loss scaling).
    """
    off = AmpSettings(False, torch.float32, False, device_type)
    if not enabled:
        return off
    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype_name not in dtypes:
        raise ValueError(f'SOLVER.AMP.DTYPE must be "float16" or "bfloat16", got {dtype_name!r}')
    dtype = dtypes[dtype_name]
    if device_type == "cuda":
        if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
            warnings.warn("this GPU has no bfloat16: mixed precision disabled", stacklevel=2)
            return off
        return AmpSettings(True, dtype, dtype is torch.float16, "cuda")
    if device_type == "cpu" and dtype is torch.bfloat16:
        return AmpSettings(True, dtype, False, "cpu")
    warnings.warn(
        f"SOLVER.AMP.DTYPE {dtype_name} needs CUDA; training in float32 on {device_type}",
        stacklevel=2,
    )
    return off
