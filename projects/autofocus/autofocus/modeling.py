"""AutoFocusRCNN: SniperRCNN plus a FocusPixel head trained jointly on the same chips.

`build_autofocus_model(cfg)` builds it: the AutoFocus trainer, predictor and benchmark call
it, so they never depend on which modules happen to be imported. It goes through
`sniper.modeling.build_model` (the class is registered in `META_ARCH_REGISTRY` where it is
defined, as detectron2 meta-architectures are), so `MODEL.META_ARCHITECTURE` may also name
a registered subclass; anything without the FocusPixel head is refused.

Inputs and targets are those of `SniperRCNN` (chip px); targets may also carry
`focus_boxes` / `focus_sizes` / `focus_ignore_boxes` (see `autofocus.targets`).

With AUTOFOCUS.FREEZE_DETECTOR the builder makes a `RetrofitAutoFocusRCNN` instead: the same
modules and state-dict keys, but only the FocusPixel head trains, on the features of the
frozen detector loaded from MODEL.WEIGHTS (a trained SNIPER checkpoint); its checkpoints are
plain AutoFocusRCNN checkpoints.

Outputs: in training SniperRCNN's loss dict plus `loss_focus`; in eval, per image,
SniperRCNN's `{"boxes", "scores", "labels"}` plus `focus_prob`: float32
`(ceil(h / s), ceil(w / s))` probability that each cell of the *unpadded* input `(h, w)` is a
FocusPixel (`s` = the stride of the head's feature, 16 for "p4"; cell `(y, x)` covers input
px `[x*s, (x+1)*s) x [y*s, (y+1)*s)`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from fvcore.common.config import CfgNode
from torch import Tensor, nn

from sniper.cli_errors import ConfigError
from sniper.modeling import META_ARCH_REGISTRY, SniperRCNN, build_model
from sniper.modeling.roi_heads import RangeAwareRoIHeads
from sniper.modeling.rpn import IgnoreAwareRPN
from sniper.modeling.state_dict import LoadReport
from sniper.modeling.transform import NoResizeTransform

from .head import FocusPixelHead, focus_loss, focus_probability
from .targets import focus_pixel_labels_batch

__all__ = [
    "AutoFocusRCNN",
    "RetrofitAutoFocusRCNN",
    "build_autofocus_model",
    "check_detector_loaded",
]

logger = logging.getLogger(__name__)

HEAD_PREFIX = "focus_head."  # state-dict keys of the FocusPixel head


@META_ARCH_REGISTRY.register()
class AutoFocusRCNN(SniperRCNN):
    """Faster R-CNN + FPN for SNIPER chips with a FocusPixel head (module doc).

    Args:
        backbone, rpn, roi_heads, transform: as `SniperRCNN`.
        focus_head: the FocusPixel head on `focus_feature`.
        focus_feature: name of the backbone output the head reads ("p4").
        focus_stride: stride of that feature in input px (16 for "p4").
        label_sizes: `(a, b, c)` FocusPixel label thresholds in chip px.
        focus_loss_weight: multiplier of `loss_focus`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        rpn: IgnoreAwareRPN,
        roi_heads: RangeAwareRoIHeads,
        transform: NoResizeTransform,
        focus_head: FocusPixelHead,
        focus_feature: str = "p4",
        focus_stride: int = 16,
        label_sizes: tuple[float, float, float] = (5.0, 64.0, 90.0),
        focus_loss_weight: float = 1.0,
    ) -> None:
        super().__init__(backbone, rpn, roi_heads, transform)
        self.focus_head = focus_head
        self.focus_feature = str(focus_feature)
        self.focus_stride = int(focus_stride)
        a, b, c = (float(v) for v in label_sizes)
        if not 0 <= a < b <= c:
            raise ValueError(f"label_sizes need 0 <= a < b <= c, got {label_sizes}")
        self.label_sizes = (a, b, c)
        self.focus_loss_weight = float(focus_loss_weight)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> AutoFocusRCNN:
        """SniperRCNN's parts from MODEL.* / SNIPER.*, the head from AUTOFOCUS.*
        (needs `add_sniper_config` and `autofocus.config.add_autofocus_config`)."""
        base = SniperRCNN.from_config(cfg)
        af = cfg.AUTOFOCUS
        strides = base.backbone.strides
        if af.FEATURE not in strides:
            raise ValueError(
                f"AUTOFOCUS.FEATURE = {af.FEATURE!r} is not a backbone output ({sorted(strides)})"
            )
        head = FocusPixelHead(base.backbone.out_channels, af.HEAD_CHANNELS)
        return cls(
            base.backbone,
            base.rpn,
            base.roi_heads,
            base.transform,
            head,
            focus_feature=af.FEATURE,
            focus_stride=strides[af.FEATURE],
            label_sizes=(af.POS_MIN_SIZE, af.POS_MAX_SIZE, af.IGNORE_MAX_SIZE),
            focus_loss_weight=af.LOSS_WEIGHT,
        )

    def _focus_losses(self, logits: Tensor, targets: list[dict[str, Tensor]]) -> Tensor:
        """loss_focus of the batch: labels on the padded map, CE with ignore -1."""
        a, b, c = self.label_sizes
        map_size = (int(logits.shape[-2]), int(logits.shape[-1]))
        labels = focus_pixel_labels_batch(targets, map_size, self.focus_stride, a, b, c)
        return focus_loss(logits, labels.to(logits.device), self.focus_loss_weight)

    def _focus_maps(self, logits: Tensor, image_sizes: list[tuple[int, int]]) -> list[Tensor]:
        """Per image float32 `(ceil(h/s), ceil(w/s))` FocusPixel probabilities."""
        prob = focus_probability(logits)
        s = self.focus_stride
        return [
            prob[i, : math.ceil(h / s), : math.ceil(w / s)] for i, (h, w) in enumerate(image_sizes)
        ]

    def forward(  # type: ignore[override]
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Loss dict (with `loss_focus`) in training mode; per-image detections with
        `focus_prob` in eval mode."""
        image_list, targets, features = self.forward_features(images, targets)
        logits = self.focus_head(features[self.focus_feature])
        result = self.forward_heads(image_list, features, targets)
        if self.training:
            assert targets is not None and isinstance(result, dict)
            result["loss_focus"] = self._focus_losses(logits, targets)
            return result
        for out, prob in zip(result, self._focus_maps(logits, image_list.image_sizes), strict=True):
            out["focus_prob"] = prob
        return result


class RetrofitAutoFocusRCNN(AutoFocusRCNN):
    """AutoFocusRCNN whose detector is frozen: only the FocusPixel head trains (a retrofit).

    Same constructor, modules and state-dict keys as `AutoFocusRCNN`, so its checkpoints
    load into a plain AutoFocusRCNN (cascade, predictor). Every parameter outside
    `focus_head` has `requires_grad=False` (hence is never given to the optimizer), and the
    detector's modules (backbone, RPN, RoI heads, transform) stay in eval mode even when
    the model is put in training mode, so BatchNorm statistics never move.

    Training forward: normalize + pad and the backbone under `torch.no_grad()`, then the
    head on `focus_feature` -> `{"loss_focus": scalar float32}` only; the RPN and the RoI
    heads are not run. Eval forward: `AutoFocusRCNN`'s (detections + `focus_prob`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """`AutoFocusRCNN`'s arguments; then freezes everything but the head."""
        super().__init__(*args, **kwargs)
        for name, param in self.named_parameters():
            param.requires_grad_(name.startswith(HEAD_PREFIX))
        self.train(self.training)

    def train(self, mode: bool = True) -> RetrofitAutoFocusRCNN:
        """`mode` for the FocusPixel head (and `self.training`); eval for the detector."""
        super().train(mode)
        for child in self.children():
            if child is not self.focus_head:
                child.train(False)
        return self

    def forward(  # type: ignore[override]
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """`{"loss_focus"}` in training mode (frozen features, class doc); per-image
        detections with `focus_prob` in eval mode."""
        if not self.training:
            return super().forward(images, targets)
        with torch.no_grad():
            _, targets, features = self.forward_features(images, targets)
        assert targets is not None
        logits = self.focus_head(features[self.focus_feature])
        return {"loss_focus": self._focus_losses(logits, targets)}


def check_detector_loaded(report: LoadReport | None, source: str) -> None:
    """Check that loading `source` into a `RetrofitAutoFocusRCNN` set every detector weight.

    Keys of the FocusPixel head may be missing or of another shape (a SNIPER checkpoint has
    no head: it keeps its initialization); any other missing or shape-mismatched key would
    leave part of the frozen detector random, so it is an error.

    Args:
        report: what `sniper.modeling.state_dict.load_model_state` did (None: nothing was
            loaded).
        source: how the message names the file (e.g. "MODEL.WEIGHTS file 'sniper.pth'").

    Raises:
        ValueError: naming `source`, the number of offending keys and the first few.
    """
    if report is None:
        raise ValueError(
            f"AUTOFOCUS.FREEZE_DETECTOR: nothing was loaded from {source}: the frozen "
            "detector would stay random"
        )
    bad = [k for k in report.missing if not k.startswith(HEAD_PREFIX)]
    bad += [
        f"{k} (file {tuple(a)}, model {tuple(b)})"
        for k, a, b in report.mismatched
        if not k.startswith(HEAD_PREFIX)
    ]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ValueError(
            f"AUTOFOCUS.FREEZE_DETECTOR: {source} does not hold the whole detector of this "
            f"config ({len(bad)} detector keys missing or of another shape: {shown}); give "
            "MODEL.WEIGHTS a SNIPER checkpoint trained with the same MODEL.* settings"
        )
    if report.missing:
        logger.info("retrofit: the FocusPixel head starts from its initialization")


def build_autofocus_model(cfg: CfgNode) -> AutoFocusRCNN:
    """The AutoFocus model of `cfg` on MODEL.DEVICE, in training mode.

    `sniper.modeling.build_model(cfg)`, checked to be an `AutoFocusRCNN`; with
    AUTOFOCUS.FREEZE_DETECTOR a `RetrofitAutoFocusRCNN` (its weights are loaded later, from
    MODEL.WEIGHTS, by whoever trains or runs it).

    Raises:
        ConfigError: MODEL.META_ARCHITECTURE names a model without the FocusPixel head (a
            ValueError; one line on the command lines).
    """
    if cfg.AUTOFOCUS.FREEZE_DETECTOR:
        model = RetrofitAutoFocusRCNN.from_config(cfg).to(torch.device(cfg.MODEL.DEVICE))
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        logger.info(
            "built %s: %d parameters (%d trainable)", type(model).__name__, total, trainable
        )
        return model
    model = build_model(cfg)
    if not isinstance(model, AutoFocusRCNN):
        raise ConfigError(
            f"config key MODEL.META_ARCHITECTURE = {cfg.MODEL.META_ARCHITECTURE!r}: AutoFocus "
            f"needs {AutoFocusRCNN.__name__} (or a registered subclass), not "
            f"{type(model).__name__}",
            key="MODEL.META_ARCHITECTURE",
        )
    return model
