"""`AutoFocusPredictor`: detectron2's `DefaultPredictor` for AutoFocus cascade inference.

One `(H, W, 3)` uint8 numpy image in (BGR by default, as `cv2.imread` gives), the merged
cascade detections out, in original-image pixels::

    cfg = setup_cfg("configs/autofocus/synthetic_mobilenet.yaml",
                    ["MODEL.WEIGHTS", "output/model_final.pth"])
    predictor = AutoFocusPredictor(cfg)
    out = predictor(cv2.imread("image.jpg"))
    out["boxes"], out["scores"], out["classes"], out["pixels"], out["chips_per_scale"]
    predictor(image, thresholds=(0.1, 0.3))   # per-call cascade overrides
"""

from __future__ import annotations

from typing import Any

from fvcore.common.config import CfgNode

from sniper.inference.predictor import SniperPredictor

from .cascade import AutoFocusCascade
from .modeling import AutoFocusRCNN, build_autofocus_model

__all__ = ["AutoFocusPredictor"]


class AutoFocusPredictor(SniperPredictor):
    """Build the model of `cfg`, load `cfg.MODEL.WEIGHTS`, run the AutoFocus cascade.

    Args:
        cfg: a config with `add_sniper_config` and `add_autofocus_config` whose
            MODEL.META_ARCHITECTURE is AutoFocusRCNN (or a subclass). An empty
            MODEL.WEIGHTS leaves the model randomly initialized (warning).
        input_format: channel order of the images given to the predictor, "BGR" (default,
            `cv2.imread`) or "RGB"; converted to `cfg.INPUT.FORMAT`.
        **cascade_overrides: keywords of `AutoFocusCascade` overriding the config (e.g.
            `top_k`, `max_pixels_per_batch`, `params`).

    Attributes:
        model: the detector, in eval mode on `cfg.MODEL.DEVICE`.
        cascade: the `AutoFocusCascade` that runs it.

    Raises:
        FileNotFoundError: MODEL.WEIGHTS names a file that does not exist.
        ValueError: unknown `input_format`, or a model without the FocusPixel head.
    """

    def build_model(self, cfg: CfgNode) -> AutoFocusRCNN:
        """The `AutoFocusRCNN` of ``cfg`` (`autofocus.modeling.build_autofocus_model`)."""
        return build_autofocus_model(cfg)

    def build_engine(self, cfg: CfgNode, model: Any, **overrides: Any) -> AutoFocusCascade:
        """The AutoFocus cascade of ``cfg`` (per-call overrides: ``CascadeParams`` fields
        such as ``thresholds``, ``border_delta``, given to ``__call__``/``predict_batch``)."""
        return AutoFocusCascade.from_config(cfg, model, **overrides)

    @property
    def cascade(self) -> AutoFocusCascade:
        """The ``AutoFocusCascade`` the predictor runs."""
        return self.inference
