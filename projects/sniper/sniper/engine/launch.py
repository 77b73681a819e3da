"""Multi-process launch (detectron2's `launch`); the collective helpers are in
`sniper.engine.comm`, the rendezvous in `sniper.engine.rendezvous`.

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

A worker that fails with a `ConfigError` (such as the rendezvous error) hands its message to
the parent, which raises it, so the command line prints one line; a worker that exited with
status 2 (it printed its own one-line error) makes the parent exit with status 2 too.

The helpers of `sniper.engine.comm` and `sniper.engine.rendezvous` are re-exported here.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException

from sniper.cli_errors import ConfigError

from .comm import (
    all_gather,
    create_ddp_model,
    get_local_rank,
    get_rank,
    get_world_size,
    is_main_process,
    reduce_dict,
    set_local_rank,
    synchronize,
)
from .dist_env import DistEnv, from_environ
from .rendezvous import (
    DEFAULT_RENDEZVOUS_TIMEOUT,
    RENDEZVOUS_ENV,
    RendezvousError,
    find_free_port,
    init_tcp_group,
    rendezvous_timeout_from_env,
    wait_for_machine_zero,
)

__all__ = [
    "DEFAULT_RENDEZVOUS_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "RENDEZVOUS_ENV",
    "RendezvousError",
    "all_gather",
    "create_ddp_model",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "init_tcp_group",
    "wait_for_machine_zero",
    "launch",
    "reduce_dict",
    "rendezvous_timeout_from_env",
    "synchronize",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = "auto",
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
    rendezvous_timeout: timedelta | None = None,
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
        rendezvous_timeout: how long a spawned worker waits for the others at a
            ``tcp://`` dist_url (None: `rendezvous_timeout_from_env`).

    Returns:
        `main_func`'s return value when this process runs it in place (a single process,
        or one process of a torchrun / srun job), else None.

    Raises:
        ValueError: invalid counts, `dist_url="auto"` with several machines, or an
            incomplete torchrun / SLURM environment (`sniper.engine.dist_env.from_environ`).
        ConfigError: a worker failed with one (e.g. `RendezvousError`); its message.
        SystemExit: status 2, when a worker exited with status 2 (it printed its error).
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
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// rendezvous across machines needs a shared file system")
    meet = rendezvous_timeout if rendezvous_timeout is not None else rendezvous_timeout_from_env()
    if machine_rank > 0 and urlparse(dist_url).scheme == "tcp":
        wait_for_machine_zero(dist_url, machine_rank, meet)
    errors = mp.get_context("spawn").SimpleQueue()
    layout = (world_size, num_gpus_per_machine, machine_rank, dist_url)
    try:
        mp.start_processes(
            _distributed_worker,
            nprocs=num_gpus_per_machine,
            args=(main_func, layout, args, (timeout, meet), errors),
            daemon=False,
            start_method="spawn",
        )
    except ProcessException as err:
        if not errors.empty():
            raise ConfigError(errors.get()) from None
        if isinstance(err, mp.ProcessExitedException) and err.exit_code == 2:
            raise SystemExit(2) from None
        raise
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
    set_local_rank(env.local_rank)
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
    layout: tuple[int, int, int, str],
    args: Sequence[Any],
    timeouts: tuple[timedelta, timedelta],
    errors: Any,
) -> None:
    """Body of one spawned process: run `_worker_body`; a `ConfigError` goes to the parent
    through ``errors`` (a queue) and this process exits with status 2."""
    try:
        _worker_body(local_rank, main_func, layout, args, timeouts)
    except ConfigError as err:
        errors.put(str(err))
        sys.stderr.flush()
        raise SystemExit(2) from None


def _worker_body(
    local_rank: int,
    main_func: Callable[..., Any],
    layout: tuple[int, int, int, str],
    args: Sequence[Any],
    timeouts: tuple[timedelta, timedelta],
) -> None:
    """Join the group, pick the GPU, run `main_func`."""
    world_size, num_gpus_per_machine, machine_rank, dist_url = layout
    timeout, rendezvous_timeout = timeouts
    has_gpu = torch.cuda.is_available()
    if has_gpu and num_gpus_per_machine > torch.cuda.device_count():
        raise RuntimeError(
            f"--num-gpus {num_gpus_per_machine} but only {torch.cuda.device_count()} "
            "CUDA devices are visible"
        )
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    set_local_rank(local_rank)
    if has_gpu:
        torch.cuda.set_device(local_rank)
    backend = "nccl" if has_gpu else "gloo"
    init_tcp_group(backend, dist_url, world_size, global_rank, timeout, rendezvous_timeout)
    synchronize()
    # An exception propagates: torch.multiprocessing then terminates the other workers and
    # re-raises it in the parent, so no worker hangs in a collective its peer never joins.
    main_func(*args)
    synchronize()
    dist.destroy_process_group()
