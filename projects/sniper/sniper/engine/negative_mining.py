"""SNIPER negative chip mining and training, the three stages (docs/design.md section 4).

`projects/sniper/mine_negatives.py` is the command line (`argument_parser`, then
`launch_negative_mining`); every process runs `run_negative_mining(args)`. Stages (the
trailing `KEY VALUE` pairs override the config of all of them):

1. `SniperRPN` (`MODEL.META_ARCHITECTURE "SniperRPN"`, `rpn_stage_config`) trained on positive
   chips for `SNIPER.NEG_RPN_EPOCHS` epochs (iterations = epochs x chips of epoch 0 /
   (SOLVER.IMS_PER_BATCH x SOLVER.ITER_SIZE); SOLVER.STEPS scaled by the same ratio to
   SOLVER.MAX_ITER) in OUTPUT_DIR/rpn (`train_rpn`). Skipped when rpn/model_final.pth
   exists or `--skip-rpn WEIGHTS` gives the RPN.
2. Its proposals on the training images at SNIPER.TEST_SCALES -> OUTPUT_DIR/proposals.npz
   (`mine_proposals`). Skipped when that file exists. `--proposals-only` stops here.
3. The detector of the config (MODEL.META_ARCHITECTURE) with `SNIPER.PROPOSALS_FILE` = that
   file (positive + negative chips) in OUTPUT_DIR (`detector_stage_config`), then the final
   evaluation on DATASETS.TEST, as train_net.py.

`--resume` continues stage 1 or 3 from the last checkpoint of its folder. Delete
rpn/model_final.pth or proposals.npz to redo a finished stage.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from fvcore.common.config import CfgNode

from sniper.cli_errors import cli_errors
from sniper.config import load_config_or_exit, validate_cfg
from sniper.data.build import build_chip_sampler, get_records
from sniper.data.checks import check_job_data_or_exit
from sniper.data.registration import build_dataset_catalog_or_exit
from sniper.modeling import SniperRPN, build_model
from sniper.modeling.state_dict import load_model_weights

from .batch_scaling import scale_schedule
from .checkpoint_files import checkpoint_errors_exit
from .defaults import (
    apply_register_coco,
    default_argument_parser,
    default_setup,
    rendezvous_timeout,
    setup_logger,
)
from .launch import all_gather, get_rank, get_world_size, launch, synchronize
from .preflight import preflight
from .proposals import write_proposals_file
from .trainer import SniperTrainer

__all__ = [
    "PROPOSALS_NAME",
    "RPN_DIR",
    "argument_parser",
    "check_args",
    "detector_stage_config",
    "epoch_chip_count",
    "launch_negative_mining",
    "mine_proposals",
    "rpn_iterations",
    "rpn_stage_config",
    "run_negative_mining",
    "train_rpn",
]

logger = logging.getLogger(__name__)

RPN_DIR = "rpn"
PROPOSALS_NAME = "proposals.npz"
_RPN_ARCH = SniperRPN.__name__  # MODEL.META_ARCHITECTURE of stages 1 and 2


def epoch_chip_count(cfg: CfgNode, records: list[dict]) -> int:
    """Positive chips of epoch 0 (``len(ChipSampler.epoch_chips(0))``, planned without
    assigning boxes) of the chip sampler of ``cfg`` without proposals."""
    positive = cfg.clone()
    positive.defrost()
    positive.SNIPER.PROPOSALS_FILE = ""
    plan, _ = build_chip_sampler(positive, records).plan_chips(0)
    return len(plan)


def rpn_iterations(epochs: float, chips_per_epoch: int, ims_per_batch: int) -> int:
    """Iterations of ``epochs`` epochs of ``chips_per_epoch`` chips (at least 1)."""
    if epochs <= 0 or chips_per_epoch <= 0 or ims_per_batch <= 0:
        raise ValueError(
            f"need epochs, chips per epoch and IMS_PER_BATCH > 0, got {epochs}, "
            f"{chips_per_epoch}, {ims_per_batch}"
        )
    return max(1, math.ceil(epochs * chips_per_epoch / ims_per_batch))


def rpn_stage_config(cfg: CfgNode, chips_per_epoch: int) -> CfgNode:
    """Config of stage 1: `SniperRPN`, positive chips, the short schedule, OUTPUT_DIR/rpn.

    SOLVER.STEPS keep their position relative to SOLVER.MAX_ITER; the warm-up shrinks by the
    same ratio when the schedule is shorter (never grows); there is no evaluation (an RPN
    has no classes to score) and no mask branch (MODEL.MASK_ON off: proposals need no masks).
    """
    s = cfg.SOLVER
    # One iteration is one SGD step of IMS_PER_BATCH x ITER_SIZE chips.
    iters = rpn_iterations(
        cfg.SNIPER.NEG_RPN_EPOCHS, chips_per_epoch, s.IMS_PER_BATCH * s.ITER_SIZE
    )
    ratio = iters / max(int(s.MAX_ITER), 1)
    steps = sorted({max(1, round(x * ratio)) for x in s.STEPS if x < s.MAX_ITER})
    out = cfg.clone()
    out.defrost()
    out.MODEL.META_ARCHITECTURE = _RPN_ARCH
    out.MODEL.MASK_ON = False
    out.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, RPN_DIR)
    out.SNIPER.PROPOSALS_FILE = ""
    out.SOLVER.MAX_ITER = iters
    out.SOLVER.STEPS = tuple(x for x in steps if x < iters)
    out.SOLVER.WARMUP_ITERS = min(int(s.WARMUP_ITERS), round(s.WARMUP_ITERS * ratio))
    out.DATASETS.TEST = ()
    out.TEST.EVAL_PERIOD = 0
    validate_cfg(out)
    out.freeze()
    return out


def detector_stage_config(cfg: CfgNode, proposals_file: str) -> CfgNode:
    """Config of stage 3: the detector of ``cfg`` with negative chips from ``proposals_file``."""
    out = cfg.clone()
    out.defrost()
    out.SNIPER.PROPOSALS_FILE = proposals_file
    validate_cfg(out)
    out.freeze()
    return out


def train_rpn(cfg: CfgNode, args: argparse.Namespace, records: list[dict]) -> str:
    """Stage 1: train the `SniperRPN` of ``cfg``; returns its rpn/model_final.pth."""
    chips = epoch_chip_count(cfg, records)
    rpn_cfg = rpn_stage_config(cfg, chips)
    default_setup(rpn_cfg, args)
    logger.info(
        "stage 1: %s, %s epochs x %d positive chips / %d per batch = %d iterations, in %s",
        _RPN_ARCH,
        cfg.SNIPER.NEG_RPN_EPOCHS,
        chips,
        cfg.SOLVER.IMS_PER_BATCH,
        rpn_cfg.SOLVER.MAX_ITER,
        rpn_cfg.OUTPUT_DIR,
    )
    trainer = SniperTrainer(rpn_cfg)
    with checkpoint_errors_exit():
        trainer.resume_or_load(resume=args.resume, overwrite=getattr(args, "overwrite", False))
    trainer.train()
    synchronize()  # rank 0 writes model_final.pth; the others read it in stage 2
    return os.path.join(rpn_cfg.OUTPUT_DIR, "model_final.pth")


def mine_proposals(cfg: CfgNode, weights: str, records: list[dict], path: str) -> None:
    """Stage 2: the proposals of the `SniperRPN` ``weights`` on ``records``, written to
    ``path`` (`sniper.engine.proposals.write_proposals_file`)."""
    rpn_cfg = cfg.clone()
    rpn_cfg.defrost()
    rpn_cfg.MODEL.META_ARCHITECTURE = _RPN_ARCH
    model = build_model(rpn_cfg)
    load_model_weights(model, weights)
    logger.info(
        "stage 2: proposals of %s on %d training images at scales %s -> %s",
        weights,
        len(records),
        list(cfg.SNIPER.TEST_SCALES),
        path,
    )
    write_proposals_file(rpn_cfg, model, records, path)


def run_negative_mining(args: argparse.Namespace) -> Any:
    """Body of every process: the three stages (module doc).

    Args:
        args: the command line of `argument_parser`.

    Returns:
        Stage 3's evaluation (``SniperTrainer.train``), or ``{"proposals_file": path}`` with
        ``--proposals-only``.
    """
    apply_register_coco(args, load_config_or_exit)
    cfg = load_config_or_exit(args.config_file, args.opts)
    check_args(cfg, args)
    build_dataset_catalog_or_exit(cfg)
    cfg, scaling = scale_schedule(cfg, get_world_size())
    out_dir = cfg.OUTPUT_DIR
    setup_logger(out_dir, rank=get_rank())
    if scaling is not None:
        logger.info(scaling.describe())
    rpn_final = os.path.join(out_dir, RPN_DIR, "model_final.pth")
    proposals = os.path.join(out_dir, PROPOSALS_NAME)
    # Rank 0 decides, so that no rank sees a file another rank has just written.
    have_rpn, have_proposals = all_gather((os.path.isfile(rpn_final), os.path.isfile(proposals)))[0]
    records = get_records(cfg.DATASETS.TRAIN)
    if have_proposals:
        logger.info("stage 1-2 skipped: %s exists", proposals)
    else:
        weights = args.skip_rpn or rpn_final
        if args.skip_rpn:
            logger.info("stage 1 skipped: RPN weights %s (--skip-rpn)", weights)
        elif have_rpn:
            logger.info("stage 1 skipped: %s exists", rpn_final)
        else:
            weights = train_rpn(cfg, args, records)
            setup_logger(out_dir, rank=get_rank())
        mine_proposals(cfg, weights, records, proposals)
    if args.proposals_only:
        return {"proposals_file": proposals}
    det_cfg = detector_stage_config(cfg, proposals)
    default_setup(det_cfg, args)
    _, negative = build_chip_sampler(det_cfg, records).plan_chips(0)
    logger.info(
        "stage 3: detector in %s; epoch 0: %d positive and %d negative chips (from %s)",
        out_dir,
        int((~negative).sum()),
        int(negative.sum()),
        proposals,
    )
    if not negative.any():
        logger.warning(
            "no negative chips: no proposal group passes SNIPER.NEG_MIN_PROPOSALS "
            "= %s outside the positive chips",
            list(cfg.SNIPER.NEG_MIN_PROPOSALS),
        )
    trainer = SniperTrainer(det_cfg)
    with checkpoint_errors_exit():
        trainer.resume_or_load(resume=args.resume, overwrite=getattr(args, "overwrite", False))
    return trainer.train()


def check_args(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Exit with status 2 and a one-line message on flags or keys the pipeline cannot use."""
    problem = None
    if getattr(args, "eval_only", False):
        problem = "--eval-only: evaluate with train_net.py --eval-only instead"
    elif cfg.SNIPER.PROPOSALS_FILE:
        problem = (
            f"SNIPER.PROPOSALS_FILE = {cfg.SNIPER.PROPOSALS_FILE!r}: this command mines "
            "the proposals; train on a given file with train_net.py"
        )
    elif cfg.MODEL.META_ARCHITECTURE == _RPN_ARCH:
        problem = (
            f"MODEL.META_ARCHITECTURE {_RPN_ARCH}: the pipeline trains {_RPN_ARCH} "
            "first, then the detector of the config"
        )
    elif not args.skip_rpn and cfg.SNIPER.NEG_RPN_EPOCHS <= 0:
        problem = "SNIPER.NEG_RPN_EPOCHS must be > 0 to train the RPN (or use --skip-rpn)"
    elif args.skip_rpn and not os.path.isfile(args.skip_rpn):
        problem = f"--skip-rpn {args.skip_rpn}: no such file"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)


def argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """train_net.py's flags plus ``--proposals-only`` and ``--skip-rpn WEIGHTS``; the help
    ends with ``epilog`` (default: this module's doc)."""
    parser = default_argument_parser(epilog=epilog or __doc__)
    parser.add_argument(
        "--proposals-only",
        action="store_true",
        help="stop after writing OUTPUT_DIR/proposals.npz (stages 1-2)",
    )
    parser.add_argument(
        "--skip-rpn",
        default="",
        metavar="WEIGHTS",
        help="mine with these RPN weights instead of training stage 1",
    )
    return parser


def launch_negative_mining(
    main: Callable[[argparse.Namespace], Any] = run_negative_mining,
    argv: Sequence[str] | None = None,
    epilog: str | None = None,
) -> None:
    """Parses `argument_parser`'s flags, checks the config, flags and datasets
    (`sniper.data.checks.check_job_data`) before spawning workers (exit 2 on a bad one),
    launches ``main(args)`` on every process."""
    args = argument_parser(epilog).parse_args(None if argv is None else list(argv))
    with cli_errors():
        apply_register_coco(args, load_config_or_exit)
        cfg = load_config_or_exit(args.config_file, args.opts)
        check_args(cfg, args)
        preflight(cfg, args)
        meet = rendezvous_timeout(args)
        build_dataset_catalog_or_exit(cfg)
        check_job_data_or_exit(cfg)
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
            rendezvous_timeout=meet,
        )
