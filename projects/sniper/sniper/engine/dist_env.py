"""The process layout given by an external launcher: torchrun or SLURM's srun.

`launch()` (`sniper.engine.launch`) spawns its own workers unless the environment says that
a launcher already started one process per GPU; then this process joins the group itself:

- **torchrun** (`torchrun --nproc_per_node N ...`, also `python -m torch.distributed.run`):
  ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``,
  ``MASTER_PORT``); the group is initialized with ``env://``, so torchrun's own store is
  used.
- **SLURM** (`srun python ...` inside `sbatch`/`salloc`, one task per GPU): ``SLURM_PROCID``,
  ``SLURM_STEP_NUM_TASKS``, ``SLURM_LOCALID``, the nodes in ``SLURM_STEP_NODELIST`` /
  ``SLURM_JOB_NODELIST`` / ``SLURM_NODELIST``; the rendezvous is ``tcp://<host>:<port>`` with
  ``MASTER_ADDR`` / ``MASTER_PORT`` when set, else the first host of the node list and
  ``15000 + SLURM_JOB_ID % 20000`` (the same on every task). Only an srun step counts (srun
  sets ``SLURM_STEP_NUM_TASKS``): a batch script's own shell, which has ``SLURM_NTASKS``
  but is a single process, is not mistaken for task 0 of N.

torchrun's variables win when both are present (torchrun started under srun).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DistEnv", "first_slurm_host", "from_environ"]

_TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistEnv:
    """One process of a job started by an external launcher.

    launcher: "torchrun" or "slurm"; rank: global rank in [0, world_size); local_rank: rank
    within its machine (its GPU index); local_world_size: processes on its machine (0 when
    the launcher does not say); init_method: `torch.distributed.init_process_group`'s URL.
    """

    launcher: str
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    init_method: str


def _int(environ: Mapping[str, str], name: str, minimum: int = 0) -> int:
    value = environ[name]
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None
    if number < minimum:
        raise ValueError(f"environment variable {name}={value!r} must be >= {minimum}")
    return number


def first_slurm_host(nodelist: str) -> str:
    """The first host of a SLURM node list: "gpu[03-05,09],cpu1" -> "gpu03", "n7,n8" -> "n7".

    Raises:
        ValueError: an empty or malformed list (naming it).
    """
    match = re.match(r"\s*([^,\[\s]+)(\[([^\]]*)\])?", nodelist)
    if not match or (match.group(2) and not match.group(3)):
        raise ValueError(f"cannot read the first host of the SLURM node list {nodelist!r}")
    prefix, ranges = match.group(1), match.group(3)
    if ranges is None:
        return prefix
    first = ranges.split(",")[0].split("-")[0].strip()
    if not first.isdigit():
        raise ValueError(f"cannot read the first host of the SLURM node list {nodelist!r}")
    return prefix + first


def _torchrun(environ: Mapping[str, str]) -> DistEnv:
    world = _int(environ, "WORLD_SIZE", 1)
    rank = _int(environ, "RANK")
    if rank >= world:
        raise ValueError(f"environment variable RANK={rank} must be < WORLD_SIZE={world}")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if world > 1 and not environ.get(name):
            raise ValueError(f"RANK and WORLD_SIZE are set (torchrun) but {name} is not")
    local_world = _int(environ, "LOCAL_WORLD_SIZE", 1) if "LOCAL_WORLD_SIZE" in environ else 0
    return DistEnv("torchrun", rank, world, _int(environ, "LOCAL_RANK"), local_world, "env://")


def _slurm(environ: Mapping[str, str]) -> DistEnv:
    tasks = "SLURM_STEP_NUM_TASKS"
    world = _int(environ, tasks, 1)
    rank = _int(environ, "SLURM_PROCID")
    if rank >= world:
        raise ValueError(f"environment variable SLURM_PROCID={rank} must be < {tasks}={world}")
    local_rank = _int(environ, "SLURM_LOCALID") if "SLURM_LOCALID" in environ else 0
    nodes = next(
        (
            environ[k]
            for k in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
            if environ.get(k)
        ),
        "",
    )
    addr = environ.get("MASTER_ADDR") or (first_slurm_host(nodes) if nodes else "")
    if not addr:
        raise ValueError("under srun with neither MASTER_ADDR nor a SLURM_*NODELIST variable")
    if environ.get("MASTER_PORT"):
        port = _int(environ, "MASTER_PORT", 1)
    elif "SLURM_JOB_ID" in environ:
        port = 15000 + _int(environ, "SLURM_JOB_ID") % 20000
    else:
        raise ValueError("under srun with neither MASTER_PORT nor SLURM_JOB_ID")
    per_node = re.match(r"\d+", environ.get("SLURM_STEP_TASKS_PER_NODE", ""))
    local_world = int(per_node.group(0)) if per_node else 0
    return DistEnv("slurm", rank, world, local_rank, local_world, f"tcp://{addr}:{port}")


def from_environ(environ: Mapping[str, str]) -> DistEnv | None:
    """The layout of an external launcher in `environ` (module doc), or None when this
    process was not started by one (launch() then spawns its workers itself).

    Raises:
        ValueError: a launcher's variables are present but incomplete or not integers; the
            message names the variable and its value.
    """
    if any(name in environ for name in _TORCHRUN):
        missing = [name for name in _TORCHRUN if name not in environ]
        if missing:
            raise ValueError(
                f"torchrun-style environment incomplete: {', '.join(missing)} not set "
                f"({', '.join(_TORCHRUN)} go together)"
            )
        return _torchrun(environ)
    if "SLURM_PROCID" in environ and "SLURM_STEP_NUM_TASKS" in environ:
        return _slurm(environ)
    return None
