"""AutoFocusRCNN: SniperRCNN plus a FocusPixel head trained jointly on the same chips.

`build_autofocus_model(cfg)` builds it: the AutoFocus trainer, predictor and benchmark call
it, so they never depend on which modules happen to be imported. It goes through
`sniper.modeling.build_model` (the class is registered in `META_ARCH_REGISTRY` where it is
defined, as detectron2 meta-architectures are), so `MODEL.META_ARCHITECTURE` may also name
a registered subclass; anything without the FocusPixel head is refused.

Inputs and targets are those of `SniperRCNN` (chip px); targets may also carry
`focus_boxes` / `focus_sizes` / `focus_ignore_boxes` (see `autofocus.targets`).

Outputs: in training SniperRCNN's loss dict plus `loss_focus`; in eval, per image,
SniperRCNN's `{"boxes", "scores", "labels"}` plus `focus_prob`: float32
`(ceil(h / s), ceil(w / s))` probability that each cell of the *unpadded* input `(h, w)` is a
FocusPixel (`s` = the stride of the head's feature, 16 for "p4"; cell `(y, x)` covers input
px `[x*s, (x+1)*s) x [y*s, (y+1)*s)`).
"""

from __future__ import annotations

import math

from fvcore.common.config import CfgNode
from torch import Tensor, nn

from sniper.cli_errors import ConfigError
from sniper.modeling import META_ARCH_REGISTRY, SniperRCNN, build_model
from sniper.modeling.roi_heads import RangeAwareRoIHeads
from sniper.modeling.rpn import IgnoreAwareRPN
from sniper.modeling.transform import NoResizeTransform

from .head import FocusPixelHead, focus_loss, focus_probability
from .targets import focus_pixel_labels_batch

__all__ = ["AutoFocusRCNN", "build_autofocus_model"]


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


def build_autofocus_model(cfg: CfgNode) -> AutoFocusRCNN:
    """`sniper.modeling.build_model(cfg)` (on MODEL.DEVICE, in training mode), checked to be
    an `AutoFocusRCNN`.

    Raises:
        ConfigError: MODEL.META_ARCHITECTURE names a model without the FocusPixel head (a
            ValueError; one line on the command lines).
    """
    model = build_model(cfg)
    if not isinstance(model, AutoFocusRCNN):
        raise ConfigError(
            f"config key MODEL.META_ARCHITECTURE = {cfg.MODEL.META_ARCHITECTURE!r}: AutoFocus "
            f"needs {AutoFocusRCNN.__name__} (or a registered subclass), not "
            f"{type(model).__name__}",
            key="MODEL.META_ARCHITECTURE",
        )
    return model
