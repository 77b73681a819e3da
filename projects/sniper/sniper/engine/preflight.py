"""Checks an entry point runs before any work (and before spawning workers), so that a
user's mistake is one line and exit status 2 (`sniper.cli_errors`), not a traceback in
every worker.

- `check_model_names`: MODEL.META_ARCHITECTURE and MODEL.BACKBONE.NAME are registered
  (the error lists the known names);
- `check_device`: MODEL.DEVICE exists here (CUDA available, GPU index below the count);
- `check_launch`: the process layout (``--num-gpus --num-machines --machine-rank
  --dist-url``, or the torchrun / srun environment) is possible, and SOLVER.IMS_PER_BATCH
  divides among its processes.

Every check raises `ConfigError` naming the flag or key and its value.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

import torch

from sniper.cli_errors import ConfigError
from sniper.config_ranges import DEVICE_PATTERN
from sniper.data.build import SAMPLER_REGISTRY
from sniper.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY

from .dist_env import from_environ

__all__ = ["check_device", "check_launch", "check_model_names", "preflight"]


def _names(registry: Any) -> list[str]:
    return sorted(name for name, _ in registry)


def check_model_names(cfg: Any) -> None:
    """MODEL.META_ARCHITECTURE, MODEL.BACKBONE.NAME and DATALOADER.SAMPLER_TRAIN name
    registered classes.

    Raises:
        ConfigError: ``config key MODEL.BACKBONE.NAME = 'x': unknown backbone; known: ...``.
    """
    for key, value, registry, what in (
        ("MODEL.META_ARCHITECTURE", cfg.MODEL.META_ARCHITECTURE, META_ARCH_REGISTRY, "detector"),
        ("MODEL.BACKBONE.NAME", cfg.MODEL.BACKBONE.NAME, BACKBONE_REGISTRY, "backbone"),
        ("DATALOADER.SAMPLER_TRAIN", cfg.DATALOADER.SAMPLER_TRAIN, SAMPLER_REGISTRY, "sampler"),
    ):
        if value not in registry:
            raise ConfigError(
                f"config key {key} = {value!r}: unknown {what}; known: "
                + ", ".join(_names(registry)),
                key=key,
            )


def check_device(device: str, key: str = "MODEL.DEVICE") -> None:
    """``device`` ("cpu", "cuda", "cuda:N") exists on this machine.

    Raises:
        ConfigError: CUDA asked for but not available, or GPU N not visible.
    """
    if device == "cpu":
        return
    if not DEVICE_PATTERN.fullmatch(device):
        raise ConfigError(
            f'config key {key} = {device!r}: must be "cpu", "cuda" or "cuda:N"', key=key
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            f"config key {key} = {device!r}: CUDA is not available here (no visible GPU, or "
            f"torch {torch.__version__} built without CUDA); use MODEL.DEVICE cpu",
            key=key,
        )
    count = torch.cuda.device_count()
    if device != "cuda" and int(device[5:]) >= count:
        raise ConfigError(
            f"config key {key} = {device!r}: only {count} CUDA device(s) are visible "
            f"(cuda:0..cuda:{count - 1})",
            key=key,
        )


def _check_dist_url(dist_url: str, num_machines: int) -> None:
    if dist_url == "auto":
        if num_machines > 1:
            raise ConfigError(
                f"--dist-url auto: only works on one machine; with --num-machines "
                f"{num_machines} give tcp://HOST:PORT of machine 0"
            )
        return
    url = urlparse(dist_url)
    if url.scheme == "tcp":
        try:
            port = url.port
        except ValueError:
            port = None
        if not url.hostname or port is None or not 0 < port < 65536:
            raise ConfigError(f"--dist-url {dist_url}: must be tcp://HOST:PORT (port 1-65535)")
    elif url.scheme not in ("file", "env"):
        raise ConfigError(f"--dist-url {dist_url}: must be auto, tcp://HOST:PORT or file://PATH")


def check_launch(
    cfg: Any, num_gpus: int, num_machines: int, machine_rank: int, dist_url: str
) -> int:
    """The launch flags (or the torchrun / srun environment) give a possible job, and
    SOLVER.IMS_PER_BATCH divides among its processes (unless the adaptive schedule,
    SOLVER.REFERENCE_WORLD_SIZE > 0, sets it from the number of processes).

    Returns:
        The number of processes of the job.
    Raises:
        ConfigError: naming the flag (or key) and its value.
    """
    external = from_environ(os.environ)
    if external is not None and external.world_size > 1:
        world = external.world_size
        source = f"{external.launcher} started {world} processes"
    else:
        if num_gpus < 1:
            raise ConfigError(
                f"--num-gpus {num_gpus}: must be >= 1 (processes per machine; without a GPU, "
                "that many CPU processes)"
            )
        if num_machines < 1:
            raise ConfigError(f"--num-machines {num_machines}: must be >= 1")
        if not 0 <= machine_rank < num_machines:
            raise ConfigError(
                f"--machine-rank {machine_rank}: must be in [0, {num_machines - 1}] "
                f"(--num-machines {num_machines})"
            )
        world = num_gpus * num_machines
        if world > 1:
            _check_dist_url(dist_url, num_machines)
            if torch.cuda.is_available() and num_gpus > torch.cuda.device_count():
                raise ConfigError(
                    f"--num-gpus {num_gpus}: only {torch.cuda.device_count()} CUDA devices "
                    "are visible on this machine"
                )
        source = f"--num-gpus {num_gpus} x --num-machines {num_machines}"
    batch = int(cfg.SOLVER.IMS_PER_BATCH)
    # With the adaptive schedule every process keeps IMS_PER_BATCH / REFERENCE_WORLD_SIZE
    # chips (sniper.engine.batch_scaling): the scaled batch always divides.
    if cfg.SOLVER.REFERENCE_WORLD_SIZE <= 0 and batch % world:
        raise ConfigError(
            f"config key SOLVER.IMS_PER_BATCH = {batch}: must be divisible by the number of "
            f"processes ({source} = {world})",
            key="SOLVER.IMS_PER_BATCH",
        )
    return world


def preflight(cfg: Any, args: Any | None = None) -> None:
    """`check_model_names`, `check_device` and, with launch flags in ``args``
    (``num_gpus num_machines machine_rank dist_url``), `check_launch`.

    Raises:
        ConfigError: the first problem found.
    """
    check_model_names(cfg)
    check_device(cfg.MODEL.DEVICE)
    if args is not None and hasattr(args, "num_gpus"):
        check_launch(cfg, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url)
