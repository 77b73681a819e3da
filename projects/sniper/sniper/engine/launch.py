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

The rendezvous of spawned workers at a ``tcp://`` URL has its own short timeout
(`DEFAULT_RENDEZVOUS_TIMEOUT`, 60 s, or ``SNIPER_RENDEZVOUS_TIMEOUT`` seconds; the
``--rendezvous-timeout`` flag): a machine that cannot reach machine 0 (or a machine 0 whose
peers never come) stops with one line naming the URL instead of waiting for the 30-minute
collective timeout. A worker that fails with a `ConfigError` (such as the rendezvous
error) hands its message to the parent, which raises it, so the command line prints one
line; a worker that exited with status 2 (it printed its own one-line error) makes the
parent exit with status 2 too.

The helpers (`get_rank`, `get_world_size`, `get_local_rank`, `is_main_process`,
`synchronize`, `all_gather`, `reduce_dict`) and `create_ddp_model` work with and without an
initialized process group, so single-process code needs no special case.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.multiprocessing.spawn import ProcessException
from torch.nn.parallel import DistributedDataParallel

from sniper.cli_errors import ConfigError

from .dist_env import DistEnv, from_environ

__all__ = [
    "DEFAULT_RENDEZVOUS_TIMEOUT",
    "DEFAULT_TIMEOUT",
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
DEFAULT_RENDEZVOUS_TIMEOUT = timedelta(seconds=60)
RENDEZVOUS_ENV = "SNIPER_RENDEZVOUS_TIMEOUT"  # seconds; overrides the default


class RendezvousError(ConfigError):
    """The processes of the job could not meet at ``--dist-url`` within the timeout."""


def rendezvous_timeout_from_env(default: timedelta = DEFAULT_RENDEZVOUS_TIMEOUT) -> timedelta:
    """``SNIPER_RENDEZVOUS_TIMEOUT`` seconds if set, else ``default``.

    Raises:
        ConfigError: the variable is not a number > 0.
    """
    text = os.environ.get(RENDEZVOUS_ENV, "")
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 1e7:
        raise ConfigError(f"environment variable {RENDEZVOUS_ENV}={text!r}: must be seconds > 0")
    return timedelta(seconds=seconds)


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
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
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


def wait_for_machine_zero(dist_url: str, machine_rank: int, timeout: timedelta) -> None:
    """Wait until the ``tcp://HOST:PORT`` rendezvous of machine 0 accepts a connection
    (checked before spawning, so an unreachable URL is one error in this process).

    Raises:
        RendezvousError: nothing accepted a connection there within ``timeout``.
    """
    url = urlparse(dist_url)
    limit = timeout.total_seconds()
    deadline = time.monotonic() + limit
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((url.hostname, url.port), timeout=max(0.1, min(left, 2))):
                return
        except OSError:
            if left <= 0:
                raise RendezvousError(
                    f"--dist-url {dist_url}: machine {machine_rank} could not reach machine 0 "
                    f"within {limit:g} s; start machine 0 first, check the host and port, or "
                    f"wait longer with --rendezvous-timeout SECONDS or {RENDEZVOUS_ENV}"
                ) from None
            time.sleep(min(0.5, max(left, 0.0)))


def init_tcp_group(
    backend: str,
    dist_url: str,
    world_size: int,
    rank: int,
    timeout: timedelta,
    rendezvous_timeout: timedelta,
) -> None:
    """`init_process_group` at ``dist_url``; a ``tcp://`` rendezvous waits at most
    ``rendezvous_timeout`` (its TCPStore, rank 0 serving it), collectives ``timeout``.

    Raises:
        RendezvousError: the store could not be reached or opened, or not every process
            joined in time; the message names the URL, the rank and the wait.
    """
    url = urlparse(dist_url)
    if url.scheme != "tcp":
        dist.init_process_group(
            backend=backend, init_method=dist_url, world_size=world_size, rank=rank, timeout=timeout
        )
        return
    start = time.monotonic()
    try:
        store = dist.TCPStore(
            url.hostname or "",
            int(url.port or 0),
            world_size,
            rank == 0,
            timeout=rendezvous_timeout,
            multi_tenant=True,
        )
    except (RuntimeError, ValueError, OSError) as err:
        waited = time.monotonic() - start
        limit = rendezvous_timeout.total_seconds()
        more = f"wait longer with --rendezvous-timeout SECONDS or {RENDEZVOUS_ENV}"
        if waited < 0.9 * limit:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            why = f"rank {rank} could not open the rendezvous after {waited:.0f} s: {first}"
        elif rank == 0:
            why = (
                f"rank 0 waited {limit:g} s for the {world_size} processes of the job to join; "
                f"start every machine (--machine-rank 1..N-1) or {more}"
            )
        else:
            why = (
                f"rank {rank} could not reach machine 0 within {limit:g} s; start machine 0 "
                f"first, check the host and port, or {more}"
            )
        raise RendezvousError(f"--dist-url {dist_url}: {why}") from None
    store.set_timeout(timeout)
    dist.init_process_group(
        backend=backend, store=store, world_size=world_size, rank=rank, timeout=timeout
    )


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
    global _LOCAL_RANK
    world_size, num_gpus_per_machine, machine_rank, dist_url = layout
    timeout, rendezvous_timeout = timeouts
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
    backend = "nccl" if has_gpu else "gloo"
    init_tcp_group(backend, dist_url, world_size, global_rank, timeout, rendezvous_timeout)
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
