"""Multi-process launch (detectron2's `launch`) and the small collective helpers (`comm`).

`launch(main_func, num_gpus_per_machine, ...)` runs `main_func(*args)` once per process of a
`num_machines x num_gpus_per_machine` job. With one process in all it is a plain call; else
it spawns `num_gpus_per_machine` local workers that join one process group, backend "nccl"
when CUDA is available and "gloo" otherwise (so `--num-gpus 2` gives 2 CPU processes on a
machine without a GPU, which is how DDP is tested here).

Started by torchrun or under srun (`sniper.engine.dist_env`), `launch` spawns nothing: the
launcher already started one process per GPU, so this process reads its rank and the world
size from the environment, joins the group and runs `main_func` once; the `--num-gpus
--num-machines --machine-rank --dist-url` values are then ignored (a warning says so when
they disagree with the environment).

The helpers (`get_rank`, `get_world_size`, `get_local_rank`, `is_main_process`,
`synchronize`, `all_gather`, `reduce_dict`) and `create_ddp_model` work with and without an
initialized process group, so single-process code needs no special case.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .dist_env import DistEnv, from_environ

__all__ = [
    "DEFAULT_TIMEOUT",
    "all_gather",
    "create_ddp_model",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "launch",
    "reduce_dict",
    "synchronize",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)

# Set in each spawned worker: its rank within its machine.
_LOCAL_RANK = 0
_GLOO_GROUP: Any = None


def _find_free_port() -> int:
    """A TCP port that was free on localhost a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> Any:
    """Run `main_func(*args)` in every process of the job (detectron2 semantics).

    Args:
        main_func: picklable (module-level) function; called once per process.
        num_gpus_per_machine: processes per machine (one per GPU; on CPU, gloo workers).
        num_machines: machines in the job.
        machine_rank: index of this machine, 0..num_machines-1.
        dist_url: rendezvous URL ("tcp://host:port"); "auto" picks a free port on localhost,
            which only works for a single machine.
        args: positional arguments of `main_func`.
        timeout: collective-operation timeout of the process group.

    Returns:
        `main_func`'s return value when this process runs it in place (a single process,
        or one process of a torchrun / srun job), else None.

    Raises:
        ValueError: invalid counts, `dist_url="auto"` with several machines, or an
            incomplete torchrun / SLURM environment (`sniper.engine.dist_env.from_environ`).
    """
    external = from_environ(os.environ)
    if external is not None and external.world_size > 1:
        if num_gpus_per_machine * num_machines not in (1, external.world_size):
            logger.warning(
                "%s started %d processes: --num-gpus %d --num-machines %d are ignored",
                external.launcher,
                external.world_size,
                num_gpus_per_machine,
                num_machines,
            )
        return _external_worker(external, main_func, args, timeout)
    if num_gpus_per_machine < 1 or num_machines < 1:
        raise ValueError(
            f"need num_gpus_per_machine >= 1 and num_machines >= 1, got "
            f"{num_gpus_per_machine} and {num_machines}"
        )
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"machine_rank {machine_rank} not in [0, {num_machines})")
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        return main_func(*args)
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError('dist_url="auto" only works on one machine; give tcp://HOST:PORT')
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// rendezvous across machines needs a shared file system")
    mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
        start_method="spawn",
    )
    return None


def _select_device(local_rank: int) -> bool:
    """Set this process's CUDA device (GPU `local_rank`, or the only visible one, as under
    srun --gpus-per-task=1); returns whether CUDA is used.

    Raises:
        RuntimeError: fewer visible GPUs than `local_rank + 1` (and more than one).
    """
    if not torch.cuda.is_available():
        return False
    count = torch.cuda.device_count()
    if local_rank >= count and count != 1:
        raise RuntimeError(
            f"local rank {local_rank} needs GPU {local_rank} but only {count} CUDA devices "
            "are visible"
        )
    torch.cuda.set_device(local_rank if local_rank < count else 0)
    return True


def _external_worker(
    env: DistEnv, main_func: Callable[..., Any], args: Sequence[Any], timeout: timedelta
) -> Any:
    """This process of a torchrun / srun job: join the group, run `main_func`, leave."""
    global _LOCAL_RANK
    _LOCAL_RANK = env.local_rank
    has_gpu = _select_device(env.local_rank)
    dist.init_process_group(
        backend="nccl" if has_gpu else "gloo",
        init_method=env.init_method,
        world_size=env.world_size,
        rank=env.rank,
        timeout=timeout,
    )
    logger.info(
        "%s process: rank %d of %d, local rank %d (%s)",
        env.launcher,
        env.rank,
        env.world_size,
        env.local_rank,
        env.init_method,
    )
    try:
        synchronize()
        result = main_func(*args)
        synchronize()
    finally:
        dist.destroy_process_group()
    return result


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: Sequence[Any],
    timeout: timedelta,
) -> None:
    """Body of one spawned process: join the group, pick the GPU, run `main_func`."""
    global _LOCAL_RANK
    has_gpu = torch.cuda.is_available()
    if has_gpu and num_gpus_per_machine > torch.cuda.device_count():
        raise RuntimeError(
            f"--num-gpus {num_gpus_per_machine} but only {torch.cuda.device_count()} "
            "CUDA devices are visible"
        )
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    _LOCAL_RANK = local_rank
    if has_gpu:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend="nccl" if has_gpu else "gloo",
        init_method=dist_url,
        world_size=world_size,
        rank=global_rank,
        timeout=timeout,
    )
    synchronize()
    # An exception propagates: torch.multiprocessing then terminates the other workers and
    # re-raises it in the parent, so no worker hangs in a collective its peer never joins.
    main_func(*args)
    synchronize()
    dist.destroy_process_group()


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
