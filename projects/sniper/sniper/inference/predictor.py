"""`SniperPredictor`: detectron2's `DefaultPredictor` for SNIPER multi-scale inference.

One ``(H, W, 3)`` uint8 numpy image in (BGR by default, as ``cv2.imread`` gives), the merged
multi-scale detections out, in original-image pixels::

    cfg = setup_cfg("my_config.yaml", ["MODEL.WEIGHTS", "output/model_final.pth"])
    predictor = SniperPredictor(cfg)
    out = predictor(cv2.imread("image.jpg"))
    out["boxes"], out["scores"], out["classes"], out["pixels"]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from fvcore.common.config import CfgNode
from torch import nn

from sniper.image_ops import check_image
from sniper.modeling import build_model
from sniper.modeling.state_dict import load_model_weights
from sniper.sources import ImageSource

from .multiscale import MultiScaleInference

__all__ = ["SniperPredictor"]

logger = logging.getLogger(__name__)


class SniperPredictor:
    """Build the model of ``cfg``, load ``cfg.MODEL.WEIGHTS``, run multi-scale inference.

    Args:
        cfg: a config with ``add_sniper_config`` (MODEL.*, INPUT.FORMAT, SNIPER.TEST_*).
            An empty MODEL.WEIGHTS leaves the model randomly initialized (warning).
        input_format: channel order of the images given to the predictor, ``"BGR"``
            (default, ``cv2.imread``) or ``"RGB"``; converted to ``cfg.INPUT.FORMAT``.
        **inference_overrides: keywords of ``MultiScaleInference`` overriding the config
            (e.g. ``max_pixels``, ``tile_size``, ``tile_overlap``, ``top_k``).

    Attributes:
        model: the detector, in eval mode on ``cfg.MODEL.DEVICE``.
        inference: the ``MultiScaleInference`` that runs it.

    Raises:
        FileNotFoundError: MODEL.WEIGHTS names a file that does not exist.
        ValueError: unknown ``input_format``.
    """

    def __init__(self, cfg: CfgNode, input_format: str = "BGR", **inference_overrides: Any):
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f'input_format must be "RGB" or "BGR", got {input_format!r}')
        self.cfg = cfg.clone()
        self.input_format = input_format
        self.model = self.build_model(self.cfg)
        self.model.eval()
        if self.cfg.MODEL.WEIGHTS:
            load_model_weights(self.model, self.cfg.MODEL.WEIGHTS)
        else:
            logger.warning(
                "MODEL.WEIGHTS is empty: the predictor runs a randomly initialized model"
            )
        self.inference = self.build_engine(self.cfg, self.model, **inference_overrides)

    def build_model(self, cfg: CfgNode) -> nn.Module:
        """The detector the predictor runs (override in subclasses):
        ``sniper.modeling.build_model``, i.e. MODEL.META_ARCHITECTURE from the registry."""
        return build_model(cfg)

    def build_engine(self, cfg: CfgNode, model: Any, **overrides: Any) -> Any:
        """The inference engine the predictor runs (override in subclasses):
        ``MultiScaleInference.from_config``."""
        return MultiScaleInference.from_config(cfg, model, **overrides)

    def _prepare(self, index: int, image: np.ndarray | ImageSource) -> np.ndarray | ImageSource:
        """Validate one image and convert its channel order to ``cfg.INPUT.FORMAT`` (a
        source is read in the engine's order by the engine itself)."""
        if isinstance(image, ImageSource):
            return image
        image = check_image(image, index)
        if self.input_format != self.cfg.INPUT.FORMAT:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image)

    def predict_batch(
        self, images: Sequence[np.ndarray | ImageSource], **overrides: Any
    ) -> list[dict]:
        """Detections of several images, batched per scale (see ``MultiScaleInference``).

        Args:
            images: uint8 ``(H, W, 3)`` arrays in ``input_format`` order (sizes may differ),
                or ``sniper.sources.ImageSource`` objects (e.g. ``open_image_source(path)``
                of a TIFF too big for memory: read by windows).
            **overrides: per-call keywords passed to the engine (e.g. AutoFocus thresholds).

        Returns:
            One dict per image: ``boxes`` float32 ``(N, 4)`` XYXY image px, ``scores`` float32
            ``(N,)``, ``classes`` int64 ``(N,)`` contiguous ids 0..C-1 (numpy, best first),
            ``pixels`` int (network-input pixels over all scales and tiles) and
            ``pixels_per_scale`` list[int]. With a mask head (the model outputs
            ``mask_patches``) also ``mask_patches`` float32 ``(N, 28, 28)``, ``mask_boxes``
            float32 ``(N, 4)`` image px (each patch's frame, unclipped) and ``masks``, N
            COCO RLE dicts of the image (``sniper.inference.mask_patches``).

        Raises:
            ValueError: naming the image index and its shape or dtype when it is not a
                uint8 ``(H, W, 3)`` array (``sniper.image_ops.check_image``).
        """
        prepared = [self._prepare(i, image) for i, image in enumerate(images)]
        if not prepared:
            return []
        outputs = self.inference(prepared, **overrides) if overrides else self.inference(prepared)
        results = []
        for out in outputs:
            out = dict(out)  # engine-specific keys (pixels per scale, chips, ...) pass through
            out["boxes"] = np.asarray(out["boxes"], np.float32).reshape(-1, 4)
            out["scores"] = np.asarray(out["scores"], np.float32)
            out["classes"] = np.asarray(out["classes"], np.int64)
            out["pixels"] = int(out["pixels"])
            results.append(out)
        return results

    def __call__(self, image: np.ndarray | ImageSource, **overrides: Any) -> dict[str, Any]:
        """Detections of one uint8 ``(H, W, 3)`` image or source (see ``predict_batch``)."""
        return self.predict_batch([image], **overrides)[0]
