"""The adaptive schedule: one config for any number of processes and any ITER_SIZE.

Detectron.pytorch's rule, opt-in with ``SOLVER.REFERENCE_WORLD_SIZE = W_ref > 0``. The
config is written for ``W_ref`` processes: SOLVER.IMS_PER_BATCH is their summed chips per
batch (``IMS_PER_BATCH / W_ref`` per process), and BASE_LR and the schedule are for
``R = SOLVER.REFERENCE_BATCH_SIZE`` chips per SGD step (0: IMS_PER_BATCH). On ``W``
processes every process keeps its chips per batch, so::

    IMS_PER_BATCH' = IMS_PER_BATCH / W_ref * W                   (chips per batch)
    effective      = IMS_PER_BATCH' * ITER_SIZE                  (chips per SGD step)
    f              = effective / R
    BASE_LR' = BASE_LR * f                                       (linear scaling rule)
    MAX_ITER', STEPS', WARMUP_ITERS', CHECKPOINT_PERIOD', TEST.EVAL_PERIOD' = value / f

(iterations rounded to the nearest integer, at least 1; periods of 0 stay 0), so that the
run sees the same number of chips, at the same points of the schedule. The scaled config
has ``REFERENCE_WORLD_SIZE = W`` and ``REFERENCE_BATCH_SIZE = effective``: scaling it again
changes nothing. With ``f = 1`` (the reference job) nothing changes.

Detectron.pytorch sums the ITER_SIZE gradients and scales the LR by the batch without
ITER_SIZE; our trainer averages them and scales the LR by the effective batch: the SGD
updates are the same.

No torch here: the rule acts on a config only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fvcore.common.config import CfgNode

from sniper.cli_errors import ConfigError

__all__ = ["BatchScaling", "plan_batch_scaling", "scale_schedule"]

_ITERATION_KEYS = (
    ("SOLVER", "MAX_ITER"),
    ("SOLVER", "WARMUP_ITERS"),
    ("SOLVER", "CHECKPOINT_PERIOD"),
    ("TEST", "EVAL_PERIOD"),
)


@dataclass(frozen=True)
class BatchScaling:
    """What the adaptive schedule does to a config on ``world_size`` processes.

    Attributes:
        world_size: processes of the job.
        reference_batch: chips per SGD step BASE_LR and the schedule were written for.
        ims_per_batch: the job's chips per batch over all processes.
        effective_batch: chips per SGD step (``ims_per_batch * ITER_SIZE``).
        factor: ``effective_batch / reference_batch``.
        changes: ``{"SOLVER.BASE_LR": (old, new), ...}`` for every key whose value changes.
    """

    world_size: int
    reference_batch: int
    ims_per_batch: int
    effective_batch: int
    factor: float
    changes: dict[str, tuple[Any, Any]]
    iter_size: int = 1

    def describe(self) -> str:
        """One line: the batch, the factor and every change (``KEY old -> new``)."""
        listed = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in self.changes.items())
        return (
            f"adaptive schedule: {self.world_size} processes x "
            f"{self.ims_per_batch // self.world_size} chips x ITER_SIZE {self.iter_size} = "
            f"{self.effective_batch} chips per step for a reference of {self.reference_batch}: "
            f"factor {self.factor:g}; " + (listed or "nothing changes")
        )


def _iterations(value: int, factor: float, keep_zero: bool) -> int:
    if value <= 0 and keep_zero:
        return int(value)
    return max(1, int(value / factor + 0.5))


def plan_batch_scaling(cfg: CfgNode, world_size: int) -> BatchScaling | None:
    """The scaling of `cfg` on `world_size` processes, or None when the rule is off
    (``SOLVER.REFERENCE_WORLD_SIZE = 0``).

    Raises:
        ConfigError: ``world_size < 1``, or IMS_PER_BATCH not divisible by
            REFERENCE_WORLD_SIZE (naming the key and its value).
    """
    sol = cfg.SOLVER
    ref_world = int(sol.REFERENCE_WORLD_SIZE)
    if ref_world <= 0:
        return None
    if world_size < 1:
        raise ConfigError(f"world size {world_size}: must be >= 1")
    if sol.IMS_PER_BATCH % ref_world:
        raise ConfigError(
            f"config key SOLVER.IMS_PER_BATCH = {sol.IMS_PER_BATCH}: must be divisible by "
            f"SOLVER.REFERENCE_WORLD_SIZE ({ref_world})",
            key="SOLVER.IMS_PER_BATCH",
        )
    reference = int(sol.REFERENCE_BATCH_SIZE) or int(sol.IMS_PER_BATCH)
    ims = int(sol.IMS_PER_BATCH) // ref_world * world_size
    effective = ims * int(sol.ITER_SIZE)
    factor = effective / reference
    new: dict[str, Any] = {
        "SOLVER.IMS_PER_BATCH": ims,
        "SOLVER.BASE_LR": float(sol.BASE_LR) * factor,
        "SOLVER.STEPS": tuple(_iterations(int(s), factor, False) for s in sol.STEPS),
        "SOLVER.REFERENCE_WORLD_SIZE": world_size,
        "SOLVER.REFERENCE_BATCH_SIZE": effective,
    }
    for node, key in _ITERATION_KEYS:
        new[f"{node}.{key}"] = _iterations(int(cfg[node][key]), factor, key != "MAX_ITER")
    if factor == 1.0:
        new["SOLVER.BASE_LR"] = sol.BASE_LR
    changes = {}
    for full, value in new.items():
        node, key = full.split(".")
        old = cfg[node][key]
        if (tuple(old) if isinstance(old, list | tuple) else old) != value:
            changes[full] = (old, value)
    return BatchScaling(world_size, reference, ims, effective, factor, changes, int(sol.ITER_SIZE))


def scale_schedule(cfg: CfgNode, world_size: int) -> tuple[CfgNode, BatchScaling | None]:
    """``(scaled config, plan)``: `cfg` itself when the rule is off or changes nothing, else
    a frozen copy with the scaled values (module doc). Log ``plan.describe()`` once the
    job's logger is set up.

    Raises:
        ConfigError: see `plan_batch_scaling`.
    """
    plan = plan_batch_scaling(cfg, world_size)
    if plan is None or not plan.changes:
        return cfg, plan
    out = cfg.clone()
    out.defrost()
    for full, (_, value) in plan.changes.items():
        node, key = full.split(".")
        out[node][key] = value
    out.freeze()
    return out, plan
