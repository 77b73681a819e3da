"""The training loop: `SniperTrainer`, in the spirit of detectron2's `DefaultTrainer`.

`SniperTrainer(cfg)` builds the model, optimizer, LR scheduler and chip loader through the
overridable classmethods `build_model`, `build_optimizer`, `build_lr_scheduler`,
`build_train_loader` (and `build_test_records` / `build_evaluator` for `test`), wraps the
model in DistributedDataParallel when the job has several processes, and `train()` runs
SOLVER.MAX_ITER iterations of: SOLVER.ITER_SIZE times (next batch -> forward under
autocast -> backward of loss / ITER_SIZE, GradScaler for float16; DDP synchronizes the
gradients on the last one only) -> loss check -> optional gradient clipping -> SGD step ->
LR step. An iteration is one SGD step: MAX_ITER, STEPS and the periods count steps, and a
checkpoint always falls between two accumulations (resuming redoes a cut one whole).

After every iteration it records the losses (`TrainingEvents`: metrics.json, TensorBoard,
progress bar), saves `model_<iter:07d>.pth` every SOLVER.CHECKPOINT_PERIOD iterations and
`model_final.pth` at the end (with optimizer, scheduler, grad scaler, data loader position
and every rank's RNG states, so that `resume_or_load(resume=True)` continues exactly), and
evaluates every TEST.EVAL_PERIOD iterations and after training (DATASETS.TEST).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import torch
from fvcore.common.config import CfgNode
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sniper.data.build import build_test_records, build_train_loader
from sniper.inference import MultiScaleInference
from sniper.modeling import build_model
from sniper.modeling.norms import recompute_batch_average
from sniper.modeling.switchable_norm import SwitchNorm2d

from .checkpoint import Checkpointer, get_rng_state, set_rng_state
from .checkpoint_files import (
    CheckpointError,
    check_previous_run,
    clean_stale_temporaries,
    previous_run_files,
)
from .evaluation import DatasetEvaluator, build_evaluator, inference_on_dataset
from .events import TrainingEvents
from .launch import (
    all_gather,
    create_ddp_model,
    get_rank,
    get_world_size,
    is_main_process,
    reduce_dict,
)
from .solver import build_lr_scheduler, build_optimizer, clip_gradients, resolve_amp

__all__ = ["SniperTrainer", "check_losses"]

logger = logging.getLogger(__name__)

Batch = list[tuple[torch.Tensor, dict[str, torch.Tensor]]]


def check_losses(losses: dict[str, float], iteration: int) -> None:
    """Raise FloatingPointError naming every non-finite loss term and the iteration."""
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        terms = ", ".join(f"{k}={v}" for k, v in bad.items())
        raise FloatingPointError(
            f"loss became non-finite at iteration {iteration}: {terms} "
            f"(all terms: {losses}); training stopped. Lower SOLVER.BASE_LR, lengthen "
            "SOLVER.WARMUP_ITERS or enable SOLVER.CLIP_GRADIENTS."
        )


def _to_device(batch: Batch, device: torch.device) -> tuple[list, list]:
    """Images and the tensors of the targets on `device` (other target entries, such as
    the loader's `image_index`, pass through unchanged)."""
    images = [img.to(device, non_blocking=True) for img, _ in batch]
    targets = [
        {
            k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in t.items()
        }
        for _, t in batch
    ]
    return images, targets


class SniperTrainer:
    """Train a SNIPER detector from a config (see module doc).

    Class attributes (override in a subclass): LOG_PERIOD (iterations between metrics.json
    lines), FIND_UNUSED_PARAMETERS (DDP option).
    """

    LOG_PERIOD = 20
    FIND_UNUSED_PARAMETERS = False

    def __init__(self, cfg: CfgNode) -> None:
        self.cfg = cfg
        model = self.build_model(cfg)
        self.optimizer = self.build_optimizer(cfg, model)
        self.scheduler = self.build_lr_scheduler(cfg, self.optimizer)
        self.data_loader = self.build_train_loader(cfg)
        self.device = next(model.parameters()).device
        amp = cfg.SOLVER.AMP
        self.amp = resolve_amp(amp.ENABLED, amp.DTYPE, self.device.type)
        self.grad_scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp.use_scaler)
        self.unwrapped_model = model
        self.model = create_ddp_model(model, find_unused_parameters=self.FIND_UNUSED_PARAMETERS)
        self.checkpointer = Checkpointer(
            model, cfg.OUTPUT_DIR, optimizer=self.optimizer, scheduler=self.scheduler
        )
        if self.amp.use_scaler:
            self.checkpointer.add_checkpointable("grad_scaler", self.grad_scaler)
        if hasattr(self.data_loader, "state_dict"):
            self.checkpointer.add_checkpointable("data_loader", self.data_loader)
        else:
            logger.warning("the train loader has no state_dict(): --resume restarts its order")
        self.start_iter = 0
        self.iter = 0
        self.max_iter = int(cfg.SOLVER.MAX_ITER)
        self.events: TrainingEvents | None = None
        self._data_iter: Iterator[Batch] | None = None
        self._pending_rng: dict[str, Any] | None = None

    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        """`sniper.modeling.build_model(cfg)` (on MODEL.DEVICE, in training mode)."""
        return build_model(cfg)

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        """SGD from SOLVER.* (see `sniper.engine.solver.build_optimizer`)."""
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(
        cls, cfg: CfgNode, optimizer: torch.optim.Optimizer
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """Linear warm-up + multi-step decay (see `sniper.engine.solver`)."""
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> Iterator[Batch]:
        """Infinite chip-batch iterator for this rank (`sniper.data.build`); its
        `state_dict()` / `load_state_dict()` give the position saved in checkpoints."""
        return build_train_loader(cfg, rank=get_rank(), world_size=get_world_size())

    @classmethod
    def build_test_records(cls, cfg: CfgNode, dataset_name: str) -> list[dict]:
        """The records (dicts, not a loader) of `dataset_name` that `test` evaluates on
        (`sniper.data.build.build_test_records`); override to filter or extend them."""
        return build_test_records(dataset_name)

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        """The evaluator of the dataset's metadata ``evaluator_type``
        (`sniper.engine.evaluation.build_evaluator`: COCO AP scoring TEST.MAX_DETS_PER_IMAGE
        detections per image, or Pascal VOC AP), writing to
        `<OUTPUT_DIR>/inference/<dataset_name>`."""
        folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, folder)

    @classmethod
    def build_inference(cls, cfg: CfgNode, model: nn.Module) -> Any:
        """The inference engine used by `test`: SNIPER multi-scale inference over
        SNIPER.TEST_SCALES with TEST_VALID_RANGES and the configured merge."""
        return MultiScaleInference.from_config(cfg, model)

    @classmethod
    def test(cls, cfg: CfgNode, model: nn.Module) -> dict[str, dict[str, dict[str, float]]]:
        """Evaluate `model` on every dataset of DATASETS.TEST with `build_inference`.

        Returns:
            {dataset_name: {"bbox": {...}, "speed": {...}}} on the main process, {} elsewhere.
        """
        if isinstance(model, DistributedDataParallel):
            model = model.module
        results: dict[str, dict[str, dict[str, float]]] = {}
        inference = cls.build_inference(cfg, model)
        for name in cfg.DATASETS.TEST:
            records = cls.build_test_records(cfg, name)
            evaluator = cls.build_evaluator(cfg, name)
            res = inference_on_dataset(inference, records, evaluator, input_format=cfg.INPUT.FORMAT)
            if is_main_process():
                results[name] = res
                tables = {k: v for k, v in res.items() if k != "speed"}
                logger.info("evaluation of %s: %s", name, tables)
        return results

    def resume_or_load(self, resume: bool = True, *, overwrite: bool = False) -> None:
        """With `resume` and a checkpoint in OUTPUT_DIR, restore everything and continue
        after its iteration; else load MODEL.WEIGHTS (model only) if set.

        First the main process removes the temporaries of interrupted saves from OUTPUT_DIR
        (`sniper.engine.checkpoint_files.clean_stale_temporaries`). Resuming takes the
        newest readable checkpoint (`Checkpointer.resume`); an OUTPUT_DIR without any starts
        from scratch, with a log line. Without `resume`, an OUTPUT_DIR holding a previous
        run's checkpoints is refused unless `overwrite`, which deletes them
        (`check_previous_run`).

        This rank's RNG states are restored right after the first batch of the resumed run
        is fetched: a loader that draws from the global RNG when it restarts mid-epoch (a
        torch DataLoader without a `generator` does) then leaves the model's random stream
        (RPN / RoI sampling) exactly as in an uninterrupted run.

        Raises:
            CheckpointError: a previous run in the way, no readable checkpoint, a checkpoint
                that does not fit, or MODEL.WEIGHTS missing, unreadable or fitting nothing
                (one-line messages; `checkpoint_errors_exit` makes them exit status 2).
        """
        out = self.cfg.OUTPUT_DIR
        if out and is_main_process():
            clean_stale_temporaries(out)
        if resume:
            extra = self.checkpointer.resume()
            if extra is not None:
                self.start_iter = int(extra.get("iteration", -1)) + 1
                states = extra.get("rng_states")
                if states is not None and len(states) == get_world_size():
                    self._pending_rng = states[get_rank()]
                else:
                    logger.warning("RNG states not restored (saved for another world size)")
                logger.info(
                    "resuming at iteration %d from %s",
                    self.start_iter,
                    self.checkpointer.loaded_path,
                )
                return
            logger.info("--resume: no checkpoint in %s, training from scratch", out or "''")
        else:
            # Rank 0 decides, so that no rank sees what another has just deleted.
            files = all_gather(previous_run_files(out) if out else [])[0]
            check_previous_run(out, overwrite=overwrite, delete=is_main_process(), files=files)
        self.start_iter = 0
        weights = self.cfg.MODEL.WEIGHTS
        if weights:
            try:
                self.checkpointer.load(weights, checkpointables=[], what="MODEL.WEIGHTS file")
            except (FileNotFoundError, ValueError) as err:
                if isinstance(err, CheckpointError):
                    raise
                raise CheckpointError(str(err.args[0] if err.args else err)) from None

    def save_checkpoint(self, name: str) -> None:
        """Save `name`.pth (every rank must call it: RNG states are gathered)."""
        rng_states = all_gather(get_rng_state())
        self.checkpointer.save(name, iteration=self.iter, rng_states=rng_states)

    def train(self) -> dict[str, Any]:
        """Run iterations start_iter..MAX_ITER-1, then the final evaluation.

        Returns:
            The final evaluation results (see `test`), {} without DATASETS.TEST.

        Raises:
            FloatingPointError: a loss became NaN or infinite (see `check_losses`).
        """
        logger.info("training from iteration %d to %d", self.start_iter, self.max_iter)
        self.events = TrainingEvents(
            self.cfg.OUTPUT_DIR,
            self.start_iter,
            self.max_iter,
            period=self.LOG_PERIOD,
            enabled=is_main_process(),
        )
        self.model.train()
        data_iter = iter(self.data_loader)
        self._data_iter = data_iter
        self.iter = self.start_iter - 1  # the last completed iteration
        try:
            for iteration in range(self.start_iter, self.max_iter):
                self.iter = iteration
                self.run_step(data_iter)
                self.after_step()
            return self.evaluate() if self.cfg.DATASETS.TEST else {}
        finally:
            self.events.close()

    def run_step(self, data_iter: Iterator[Batch]) -> None:
        """One iteration: SOLVER.ITER_SIZE batches, forward and backward each with its loss
        divided by ITER_SIZE (the gradients add up to their mean; under DDP they are
        synchronized on the last batch only), then one optimizer step (module doc). The
        logged losses are the means over the batches."""
        start = time.perf_counter()
        iter_size = int(self.cfg.SOLVER.ITER_SIZE)
        data_time = 0.0
        chips = 0
        names: list[str] = []
        sums: list[float] = []
        self.optimizer.zero_grad(set_to_none=True)
        for k in range(iter_size):
            fetch = time.perf_counter()
            batch = next(data_iter)
            if self._pending_rng is not None:
                set_rng_state(self._pending_rng)
                self._pending_rng = None
            data_time += time.perf_counter() - fetch
            chips += len(batch)
            images, targets = _to_device(batch, self.device)
            with self._gradient_sync(last=k == iter_size - 1):
                with torch.autocast(self.amp.device_type, self.amp.dtype, enabled=self.amp.enabled):
                    loss_dict = self.model(images, targets)
                names = sorted(loss_dict)
                total = sum(loss_dict[n].float() for n in names)
                local = torch.stack([loss_dict[n].detach().float() for n in names]).tolist()
                sums = local if k == 0 else [a + b for a, b in zip(sums, local, strict=True)]
                self.grad_scaler.scale(total / iter_size).backward()
        # Non-finite losses are reported below on every rank (after the collective), before
        # any step: their gradients are never applied.
        means = [v / iter_size for v in sums]
        losses = reduce_dict(dict(zip(names, means, strict=True)))
        check_losses(losses, self.iter)
        clip = self.cfg.SOLVER.CLIP_GRADIENTS
        if clip.ENABLED:
            self.grad_scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            clip_gradients(params, clip.CLIP_TYPE, clip.CLIP_VALUE)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        assert self.events is not None
        self.events.put(
            self.iter,
            losses,
            lr,
            data_time,
            time.perf_counter() - start,
            chips=chips * get_world_size(),
        )

    def _gradient_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """DDP's ``no_sync()`` for the batches before the last of an accumulation (their
        gradients stay local), a null context otherwise."""
        if not last and isinstance(self.model, DistributedDataParallel):
            return self.model.no_sync()
        return contextlib.nullcontext()

    def after_step(self) -> None:
        """Periodic checkpoint, final checkpoint, periodic evaluation."""
        next_iter = self.iter + 1
        period = self.cfg.SOLVER.CHECKPOINT_PERIOD
        if next_iter == self.max_iter:
            self.sn_batch_average()
            self.save_checkpoint("model_final")
        elif period > 0 and next_iter % period == 0:
            self.save_checkpoint(f"model_{self.iter:07d}")
        eval_period = self.cfg.TEST.EVAL_PERIOD
        if eval_period > 0 and next_iter % eval_period == 0 and next_iter != self.max_iter:
            if self.cfg.DATASETS.TEST:
                self.evaluate()
                self.model.train()

    def sn_batch_average(self) -> int:
        """With TEST.SN_BATCH_AVERAGE_ITERS = N > 0 and SwitchNorm2d layers with a batch
        branch: set their running statistics to the "batch average" over the next N
        training batches (forward passes in training mode, no gradient, no optimizer step;
        per process, as the batch statistics are), before the final checkpoint.

        Returns:
            The number of batches averaged (0 when off or without such layers).
        """
        count = int(self.cfg.TEST.SN_BATCH_AVERAGE_ITERS)
        if count <= 0 or not any(
            isinstance(m, SwitchNorm2d) and m.using_bn for m in self.model.modules()
        ):
            return 0

        data_iter = self._data_iter if self._data_iter is not None else iter(self.data_loader)

        def batches() -> Iterator[Batch]:
            for _ in range(count):
                yield next(data_iter)

        def forward(model: nn.Module, batch: Batch) -> None:
            images, targets = _to_device(batch, self.device)
            with torch.autocast(self.amp.device_type, self.amp.dtype, enabled=self.amp.enabled):
                model(images, targets)

        done = recompute_batch_average(self.model, batches(), forward)
        logger.info("SN batch statistics: the average of %d training batches", done)
        return done

    def evaluate(self) -> dict[str, Any]:
        """`test` the current model and append the results to the training events."""
        results = self.test(self.cfg, self.model)
        if self.events is not None:
            for name, res in results.items():
                self.events.put_eval(self.iter, {f"{name}/{k}": v for k, v in res.items()})
        return results
