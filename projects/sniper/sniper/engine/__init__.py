"""Launch, trainer loop, checkpointing, events, COCO and VOC evaluation, proposals, CLI setup."""

from .checkpoint import Checkpointer, get_rng_state, set_rng_state
from .defaults import (
    default_argument_parser,
    default_setup,
    launch_train_net,
    run_train_net,
    seed_all_rng,
    setup_logger,
)
from .evaluation import COCOEvaluator, build_evaluator, inference_on_dataset, load_image
from .events import TrainingEvents
from .launch import (
    all_gather,
    create_ddp_model,
    get_local_rank,
    get_rank,
    get_world_size,
    is_main_process,
    launch,
    reduce_dict,
    synchronize,
)
from .proposals import extract_proposals, write_proposals_file
from .solver import (
    AmpSettings,
    LRMultiplier,
    build_lr_scheduler,
    build_optimizer,
    clip_gradients,
    resolve_amp,
)
from .trainer import SniperTrainer, check_losses
from .voc_evaluation import PascalVOCEvaluator

__all__ = [
    "extract_proposals",
    "write_proposals_file",
    "AmpSettings",
    "COCOEvaluator",
    "PascalVOCEvaluator",
    "build_evaluator",
    "Checkpointer",
    "LRMultiplier",
    "SniperTrainer",
    "TrainingEvents",
    "all_gather",
    "build_lr_scheduler",
    "build_optimizer",
    "check_losses",
    "clip_gradients",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "get_local_rank",
    "get_rank",
    "get_rng_state",
    "get_world_size",
    "inference_on_dataset",
    "is_main_process",
    "launch",
    "launch_train_net",
    "load_image",
    "reduce_dict",
    "resolve_amp",
    "run_train_net",
    "seed_all_rng",
    "set_rng_state",
    "setup_logger",
    "synchronize",
]
