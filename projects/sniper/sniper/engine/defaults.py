"""Command line and job setup shared by the entry points (detectron2's `engine.defaults`).

`default_argument_parser()` gives the detectron2 flags (`--config-file --resume --eval-only
--num-gpus --num-machines --machine-rank --dist-url` and trailing `KEY VALUE` overrides);
`default_setup(cfg, args)` prepares a process of the job: output folder, logging to the
console and `<OUTPUT_DIR>/log.txt` (`log.txt.rank<N>` on other ranks), the resolved config
saved as `<OUTPUT_DIR>/config.yaml`, and the RNG seeds.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from fvcore.common.config import CfgNode

from sniper.cli_errors import ConfigError, cli_errors
from sniper.config import load_config_or_exit
from sniper.data.checks import check_job_data_or_exit
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.register_args import add_register_coco_argument, register_coco_opts

from .batch_scaling import scale_schedule
from .checkpoint import atomic_write, load_eval_weights
from .checkpoint_files import check_previous_run, checkpoint_errors_exit
from .events import append_metrics, flatten_results
from .launch import (
    DEFAULT_RENDEZVOUS_TIMEOUT,
    RENDEZVOUS_ENV,
    get_rank,
    get_world_size,
    is_main_process,
    launch,
    rendezvous_timeout_from_env,
)
from .preflight import preflight

__all__ = [
    "apply_register_coco",
    "default_argument_parser",
    "default_setup",
    "launch_train_net",
    "rendezvous_timeout",
    "run_train_net",
    "seed_all_rng",
    "setup_logger",
]

_FORMAT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"
_DATEFMT = "%m/%d %H:%M:%S"


def default_argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """The detectron2 command line; `KEY VALUE` pairs after the flags land in `args.opts`."""
    parser = argparse.ArgumentParser(
        epilog=epilog
        or (
            "Examples:\n"
            "  python train_net.py --config-file cfg.yaml --num-gpus 8\n"
            "  python train_net.py --config-file cfg.yaml --resume\n"
            "  python train_net.py --config-file cfg.yaml --eval-only MODEL.WEIGHTS m.pth\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="YAML config file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUTPUT_DIR/last_checkpoint (iteration, LR, data order, RNG)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="train from scratch into an OUTPUT_DIR that holds a previous run's checkpoints, "
        "deleting them (without it, such a folder is refused)",
    )
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per machine")
    parser.add_argument("--num-machines", type=int, default=1, help="machines in the job")
    parser.add_argument("--machine-rank", type=int, default=0, help="this machine's index")
    parser.add_argument(
        "--dist-url",
        default="auto",
        help='rendezvous URL tcp://HOST:PORT; "auto" = a free port on localhost (1 machine)',
    )
    parser.add_argument(
        "--rendezvous-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"how long the processes wait for each other at --dist-url (default "
        f"${RENDEZVOUS_ENV} or {DEFAULT_RENDEZVOUS_TIMEOUT.total_seconds():g})",
    )
    add_register_coco_argument(parser)
    parser.add_argument(
        "opts",
        default=[],
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. SOLVER.BASE_LR 0.01",
    )
    return parser


def apply_register_coco(
    args: argparse.Namespace, load_config: Callable[[str, list[str]], Any]
) -> None:
    """Fold ``args.register_coco`` into ``args.opts`` (an override of DATASETS.REGISTER_COCO)
    and clear it, so every process sees the entries in its config; a no-op without any."""
    entries = getattr(args, "register_coco", None) or []
    args.opts = register_coco_opts(args.config_file, args.opts, entries, load_config)
    args.register_coco = []


def setup_logger(output_dir: str | None, rank: int = 0, name: str = "sniper") -> logging.Logger:
    """Log `name` (and the `chipping` / `fvcore` loggers) at INFO: to stdout on rank 0, and
    to `<output_dir>/log.txt` (rank 0) or `log.txt.rank<N>`. Safe to call more than once."""
    formatter = logging.Formatter(_FORMAT, datefmt=_DATEFMT)
    handlers: list[logging.Handler] = []
    if rank == 0:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(formatter)
        handlers.append(console)
    if output_dir:
        filename = os.path.join(output_dir, "log.txt" if rank == 0 else f"log.txt.rank{rank}")
        os.makedirs(output_dir, exist_ok=True)
        file_handler = logging.FileHandler(filename, encoding="utf-8")
        file_handler.setFormatter(formatter)
        handlers.append(file_handler)
    for logger_name in (name, "chipping", "fvcore"):
        target = logging.getLogger(logger_name)
        for old in [h for h in target.handlers if getattr(h, "_sniper_setup", False)]:
            target.removeHandler(old)
            old.close()
        for handler in handlers:
            handler._sniper_setup = True  # type: ignore[attr-defined]
            target.addHandler(handler)
        target.setLevel(logging.INFO)
        target.propagate = False
    return logging.getLogger(name)


def seed_all_rng(seed: int | None = None) -> int:
    """Seed python `random`, numpy and torch (all devices); None or < 0 draws a seed.

    Returns:
        The seed used.
    """
    if seed is None or seed < 0:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
        logging.getLogger(__name__).info("using a random seed: %d", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the legacy global generator is seeded on purpose)
    torch.manual_seed(seed)
    return seed


def _environment() -> str:
    cuda = torch.cuda.is_available()
    lines = [
        f"python {sys.version.split()[0]}, torch {torch.__version__}, numpy {np.__version__}",
        f"CUDA available: {cuda}" + (f" ({torch.cuda.get_device_name(0)})" if cuda else ""),
        f"torch threads: {torch.get_num_threads()}, world size: {get_world_size()}",
    ]
    return "\n".join(lines)


def default_setup(cfg: CfgNode, args: Any) -> None:
    """Prepare this process of the job for `cfg`.

    Creates OUTPUT_DIR, sets up logging, logs the environment, the command line and the
    config, writes the resolved config to `<OUTPUT_DIR>/config.yaml` (main process,
    atomically) and seeds the RNGs with `SEED + rank` (SEED < 0: a random seed per rank,
    logged).

    Args:
        cfg: the resolved config (see `sniper.config.setup_cfg`).
        args: the parsed command line (`default_argument_parser`), or None.
    """
    output_dir = cfg.OUTPUT_DIR
    rank = get_rank()
    if is_main_process() and output_dir:
        os.makedirs(output_dir, exist_ok=True)
    logger = setup_logger(output_dir, rank=rank)
    logger.info("rank %d of %d; environment:\n%s", rank, get_world_size(), _environment())
    if args is not None:
        logger.info("command line arguments: %s", args)
        if getattr(args, "config_file", ""):
            logger.info("config file %s", args.config_file)
    logger.info("running with the full config:\n%s", cfg.dump())
    if is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        atomic_write(path, lambda f: f.write(cfg.dump().encode("utf-8")))
        logger.info("full config saved to %s", path)
    seed = cfg.SEED if cfg.SEED < 0 else cfg.SEED + rank
    used = seed_all_rng(seed)
    logger.info("rank %d seeded with %d", rank, used)


def run_train_net(
    args: argparse.Namespace,
    trainer_cls: type,
    load_config: Callable[[str, list[str]], Any] = load_config_or_exit,
) -> Any:
    """Body of every process of a train_net script: set up, then evaluate or train.

    ``--eval-only`` builds the model, loads MODEL.WEIGHTS (or the last checkpoint with
    ``--resume``: `sniper.engine.checkpoint.load_eval_weights`) and runs
    ``trainer_cls.test``; otherwise ``trainer_cls(cfg)`` trains (``--resume`` /
    ``--overwrite``: `SniperTrainer.resume_or_load`). A checkpoint problem is one
    ``error: ...`` line and exit status 2.
    """
    apply_register_coco(args, load_config)
    cfg = load_config(args.config_file, args.opts)
    build_dataset_catalog_or_exit(cfg)
    cfg, scaling = scale_schedule(cfg, get_world_size())
    default_setup(cfg, args)
    if scaling is not None:
        logging.getLogger(__name__).info(scaling.describe())
    if args.eval_only:
        model = trainer_cls.build_model(cfg)
        with checkpoint_errors_exit():
            loaded = load_eval_weights(model, cfg.OUTPUT_DIR, cfg.MODEL.WEIGHTS, resume=args.resume)
        results = trainer_cls.test(cfg, model)
        if is_main_process() and results:
            flat = {
                f"{name}/{k}": v
                for name, res in results.items()
                for k, v in flatten_results(res).items()
            }
            append_metrics(cfg.OUTPUT_DIR, {"eval_only": loaded, **flat})
        return results
    trainer = trainer_cls(cfg)
    with checkpoint_errors_exit():
        trainer.resume_or_load(resume=args.resume, overwrite=getattr(args, "overwrite", False))
    return trainer.train()


def rendezvous_timeout(args: argparse.Namespace) -> timedelta:
    """``--rendezvous-timeout`` (seconds > 0), else `rendezvous_timeout_from_env`.

    Raises:
        ConfigError: not a number of seconds > 0.
    """
    seconds = getattr(args, "rendezvous_timeout", None)
    if seconds is None:
        return rendezvous_timeout_from_env()
    if not 0 < seconds < 1e7:
        raise ConfigError(f"--rendezvous-timeout {seconds:g}: must be seconds > 0")
    return timedelta(seconds=seconds)


def launch_train_net(
    main: Callable[[argparse.Namespace], Any],
    load_config: Callable[[str, list[str]], Any] = load_config_or_exit,
    argv: list[str] | None = None,
) -> None:
    """Parses detectron2's flags, checks the config, the model names, the device, the
    process layout (`sniper.engine.preflight`), the datasets (their files, then their
    contents: `sniper.data.checks.check_job_data`) and the output folder (no previous run to
    train over, `check_previous_run`) before spawning workers, launches. A user's mistake,
    found before or while launching (an unreachable ``--dist-url``), is one ``error: ...``
    line and exit status 2 (`sniper.cli_errors`)."""
    args = default_argument_parser().parse_args(argv)
    with cli_errors():
        apply_register_coco(args, load_config)
        cfg = load_config(args.config_file, args.opts)
        preflight(cfg, args)
        meet = rendezvous_timeout(args)
        build_dataset_catalog_or_exit(cfg)
        if not args.eval_only and not args.resume:
            with checkpoint_errors_exit():  # before spawning: one line, not one per worker
                check_previous_run(cfg.OUTPUT_DIR, overwrite=args.overwrite, delete=False)
        check_job_data_or_exit(cfg, train=not args.eval_only)
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
            rendezvous_timeout=meet,
        )
