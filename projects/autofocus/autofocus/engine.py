"""`AutoFocusTrainer`: sniper's trainer with FocusPixel boxes in the chips and cascade tests.

Training is `SniperTrainer`'s loop unchanged: the model (`build_autofocus_model`: the
AutoFocusRCNN of MODEL.META_ARCHITECTURE) returns `loss_focus` next to the detector losses
and the total is their sum. Only the loader differs
(`autofocus.data.build_autofocus_train_loader`: chips carry `focus_boxes` / `focus_sizes` /
`focus_ignore_boxes`). With AUTOFOCUS.FREEZE_DETECTOR (a retrofit) the model is a
`RetrofitAutoFocusRCNN` returning `loss_focus` only, the optimizer holds the head's
parameters only (the others do not require gradients), and `resume_or_load` refuses a
MODEL.WEIGHTS file that did not set every detector weight (`check_detector_loaded`).

Evaluation (`test`, after training and with `--eval-only`) runs the AutoFocus cascade
(`AutoFocusCascade.from_config`) through `sniper.engine.evaluation.inference_on_dataset`,
and adds to its "speed" entry the pixels of the full pyramid (the whole image at every
AUTOFOCUS scale) and the fraction processed, and a "focus" entry: the FocusChips' missing
rate and empty rate per transition (`autofocus.focus_stats`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from fvcore.common.config import CfgNode
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sniper.engine import SniperTrainer, get_rank, get_world_size, is_main_process
from sniper.engine.checkpoint_files import CheckpointError
from sniper.engine.comm import all_gather
from sniper.engine.evaluation import inference_on_dataset

from .cascade import AutoFocusCascade
from .data import build_autofocus_train_loader
from .focus_stats import FocusStats
from .modeling import (
    AutoFocusRCNN,
    RetrofitAutoFocusRCNN,
    build_autofocus_model,
    check_detector_loaded,
)
from .params import cascade_params_from_cfg, full_pyramid_pixels

__all__ = ["AutoFocusTrainer"]

logger = logging.getLogger("sniper.autofocus.engine")  # logged with sniper's handlers


class AutoFocusTrainer(SniperTrainer):
    """Train and evaluate an AutoFocus detector from a config with the AUTOFOCUS node."""

    @classmethod
    def build_model(cls, cfg: CfgNode) -> AutoFocusRCNN:
        """The `AutoFocusRCNN` of ``cfg`` (`autofocus.modeling.build_autofocus_model`)."""
        return build_autofocus_model(cfg)

    def resume_or_load(self, resume: bool = True, *, overwrite: bool = False) -> None:
        """`SniperTrainer.resume_or_load`; for a retrofit, then check that the file loaded
        (MODEL.WEIGHTS, or the checkpoint resumed) set every weight of the frozen detector.

        Raises:
            CheckpointError: as `SniperTrainer.resume_or_load`, or a retrofit whose file
                lacks detector keys (`autofocus.modeling.check_detector_loaded`).
        """
        super().resume_or_load(resume, overwrite=overwrite)
        if not isinstance(self.unwrapped_model, RetrofitAutoFocusRCNN):
            return
        resumed = self.start_iter > 0
        source = (
            f"checkpoint {self.checkpointer.loaded_path!r}"
            if resumed
            else f"MODEL.WEIGHTS file {self.cfg.MODEL.WEIGHTS!r}"
        )
        try:
            check_detector_loaded(self.checkpointer.last_report, source)
        except ValueError as err:
            raise CheckpointError(str(err)) from None

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> Iterator:
        """sniper's resumable chip loader with FocusPixel boxes in every target."""
        return build_autofocus_train_loader(cfg, rank=get_rank(), world_size=get_world_size())

    @classmethod
    def build_inference(cls, cfg: CfgNode, model: nn.Module) -> AutoFocusCascade:
        """The AutoFocus cascade of AUTOFOCUS.* (see `AutoFocusCascade.from_config`)."""
        return AutoFocusCascade.from_config(cfg, model)

    @classmethod
    def test(cls, cfg: CfgNode, model: nn.Module) -> dict[str, dict[str, Any]]:
        """`SniperTrainer.test` with the cascade: every dataset of DATASETS.TEST through
        `inference_on_dataset`; "speed" also gets `full_pyramid_pixels` (summed over the
        dataset) and `pixel_fraction` (`input_pixels` / that); "focus" gets
        `FocusStats.summary()` (missing and empty rate per transition, summed over all ranks).

        Returns:
            `{dataset_name: {"bbox": {...}, "speed": {...}, "focus": {...}}}` on the main
            process, `{}` elsewhere.
        """
        if isinstance(model, DistributedDataParallel):
            model = model.module
        inference = cls.build_inference(cfg, model)
        params = cascade_params_from_cfg(cfg)
        results: dict[str, dict[str, Any]] = {}
        for name in cfg.DATASETS.TEST:
            records = cls.build_test_records(cfg, name)
            focus = FocusStats(params.valid_ranges)
            res = inference_on_dataset(
                inference,
                records,
                cls.build_evaluator(cfg, name),
                input_format=cfg.INPUT.FORMAT,
                on_output=focus.add,
            )
            gathered = all_gather(focus.counts)
            if not is_main_process():
                continue
            focus.counts = [type(c)() for c in focus.counts]
            focus.merge(gathered)
            full = float(
                sum(
                    sum(full_pyramid_pixels((int(r["height"]), int(r["width"])), params.scales))
                    for r in records
                )
            )
            speed = res.setdefault("speed", {})
            speed["full_pyramid_pixels"] = full
            speed["pixel_fraction"] = speed.get("input_pixels", 0.0) / full if full else 0.0
            res["focus"] = focus.summary()
            results[name] = res
            logger.info(
                "evaluation of %s: %s", name, {k: v for k, v in res.items() if k != "speed"}
            )
            logger.info(
                "AutoFocus on %s processed %.4f of the full pyramid's pixels; FocusChips %s",
                name,
                speed["pixel_fraction"],
                focus.describe(),
            )
        return results
