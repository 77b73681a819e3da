"""The small collective helpers of a job (detectron2's `comm`).

The helpers (`get_rank`, `get_world_size`, `get_local_rank`, `is_main_process`,
`synchronize`, `all_gather`, `reduce_dict`) and `create_ddp_model` work with and without an
initialized process group, so single-process code needs no special case.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "all_gather",
    "create_ddp_model",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "reduce_dict",
    "synchronize",
]

# Set in each spawned worker (`sniper.engine.launch`): its rank within its machine.
_LOCAL_RANK = 0
_GLOO_GROUP: Any = None


def set_local_rank(local_rank: int) -> None:
    """Record this process's rank within its machine (called by `sniper.engine.launch`)."""
    global _LOCAL_RANK
    _LOCAL_RANK = local_rank


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Number of processes in the job (1 without a process group)."""
    return dist.get_world_size() if _initialized() else 1


def get_rank() -> int:
    """Global rank of this process (0 without a process group)."""
    return dist.get_rank() if _initialized() else 0


def get_local_rank() -> int:
    """Rank of this process within its machine (its GPU index)."""
    return _LOCAL_RANK if _initialized() else 0


def is_main_process() -> bool:
    """True on global rank 0 (the process that writes files and shows progress)."""
    return get_rank() == 0


def synchronize() -> None:
    """Barrier across all processes; no-op for a single process."""
    if get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL:
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _gloo_group() -> Any:
    """A gloo group over all ranks (created once): object collectives stay off the GPU."""
    global _GLOO_GROUP
    if dist.get_backend() == dist.Backend.GLOO:
        return dist.group.WORLD
    if _GLOO_GROUP is None:
        _GLOO_GROUP = dist.new_group(backend="gloo")
    return _GLOO_GROUP


def all_gather(data: Any) -> list[Any]:
    """Gather a small picklable object from every rank; every rank gets the list by rank."""
    world_size = get_world_size()
    if world_size == 1:
        return [data]
    output: list[Any] = [None] * world_size
    dist.all_gather_object(output, data, group=_gloo_group())
    return output


def reduce_dict(values: dict[str, float], average: bool = True) -> dict[str, float]:
    """Sum (or average) a dict of floats over all ranks; every rank gets the result.

    Keys must be the same on every rank; the order is fixed by sorting them.
    """
    world_size = get_world_size()
    if world_size == 1 or not values:
        return dict(values)
    names = sorted(values)
    device = torch.device("cuda") if dist.get_backend() == dist.Backend.NCCL else None
    stacked = torch.tensor([float(values[k]) for k in names], dtype=torch.float64, device=device)
    dist.all_reduce(stacked)
    if average:
        stacked /= world_size
    return {k: float(v) for k, v in zip(names, stacked.tolist(), strict=True)}


def create_ddp_model(model: nn.Module, *, find_unused_parameters: bool = False) -> nn.Module:
    """Wrap `model` in DistributedDataParallel when the job has several processes.

    Buffers are not broadcast, so BatchNorm statistics stay per GPU (the model chooses
    BN / SyncBN / FrozenBN). On CUDA the model must already sit on the local GPU.
    """
    if get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    if device.type == "cuda":  # the GPU the model sits on (GPU 0 when srun shows one per task)
        device_ids = [device.index if device.index is not None else torch.cuda.current_device()]
    else:
        device_ids = None
    return DistributedDataParallel(
        model,
        device_ids=device_ids,
        broadcast_buffers=False,
        find_unused_parameters=find_unused_parameters,
    )
