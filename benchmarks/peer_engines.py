"""The contenders of `bench_peers.py`: one built model run by our engines, SAHI and supervision.

Every contender is a `Tool`: ``call(image)`` is what its user runs on one image (the timed
part: our engine, or SAHI's / supervision's slicing, model calls and merge) and ``convert``
turns what it returns into our detections dict (image px, not timed). Every model call of
every contender goes through one of our runners (`InferenceRunner.forward_inputs`), where an
`InputCounter` counts the network inputs and their pixels, so all contenders are counted by
the same rule (after the runner's tiling of inputs above ``max_pixels``).

Images come in ``cfg.INPUT.FORMAT`` (what our engines and the model take); SAHI and
supervision get them as RGB (what SAHI assumes of an array) and the single-scale predictor
of the adapters (`sniper.integrations.single_scale`) converts back.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from autofocus.cascade import AutoFocusCascade
from autofocus.params import cascade_params_from_cfg
from sniper.config import parse_scale_list
from sniper.inference import SniperPredictor
from sniper.integrations.single_scale import single_scale_predictor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_inference import contenders as our_contenders  # noqa: E402
from bench_inference import finest_scale  # noqa: E402

SAHI_SLICE, SAHI_OVERLAP, SAHI_MATCH = 512, 0.2, 0.5  # get_sliced_prediction's defaults


class InputCounter:
    """Counts the network inputs (one forward pass each) and their pixels of a runner."""

    def __init__(self, runner: Any) -> None:
        self.inputs, self.pixels = 0, 0
        forward = runner.forward_inputs

        def counted(sources, inputs):
            self.inputs += len(inputs)
            self.pixels += sum(int(i.area) for i in inputs)
            return forward(sources, inputs)

        runner.forward_inputs = counted


@dataclass
class Tool:
    """One contender: ``call(image)`` (timed) and ``convert(raw, image)`` to our dict."""

    call: Callable[[np.ndarray], Any]
    convert: Callable[[Any, np.ndarray], dict[str, Any]]
    counter: InputCounter


def _ours(engine: Any, **kwargs: Any) -> Tool:
    counter = InputCounter(engine)
    return Tool(lambda image: engine([image], **kwargs)[0], lambda out, _: out, counter)


def _predictor(cfg: Any, model: Any, scale: Any) -> SniperPredictor:
    """The adapters' single-scale predictor (RGB input) on the already built ``model``."""

    class Shared(SniperPredictor):
        def build_model(self, cfg: Any) -> Any:
            return model

    # the predictor loads MODEL.WEIGHTS into `model` once more: the same weights
    return single_scale_predictor(cfg, scale, "RGB", Shared)


def _rgb(cfg: Any) -> Callable[[np.ndarray], np.ndarray]:
    if cfg.INPUT.FORMAT == "RGB":
        return lambda image: image
    return lambda image: np.ascontiguousarray(image[:, :, ::-1])


def sahi_tool(cfg: Any, model: Any, factor: float, standard_pred: bool) -> Tool:
    """SAHI ``get_sliced_prediction`` with its defaults (512 px slices, overlap 0.2,
    GREEDYNMM / IOS 0.5, per class) on `SniperDetectionModel` with model input size
    ``factor * 512`` (long side): each full slice at the finest scale, the full-image pass
    (``standard_pred``) at that long side, as SAHI runs a model of a fixed input size."""
    from sahi.predict import get_sliced_prediction

    from sniper.integrations.sahi_convert import from_object_predictions
    from sniper.integrations.sahi_model import SniperDetectionModel

    size = round(factor * SAHI_SLICE)
    predictor = _predictor(cfg, model, (size, size))
    # confidence 0: SAHI keeps every detection the model returns (it already applies
    # MODEL.ROI_HEADS.SCORE_THRESH_TEST, like every other contender); below 0.1 SAHI would
    # switch GREEDYNMM / IOS to NMS / IOU unless force_postprocess_type is set
    sahi_model = SniperDetectionModel(model=predictor, confidence_threshold=0.0)
    rgb = _rgb(cfg)

    def call(image: np.ndarray) -> Any:
        return get_sliced_prediction(
            rgb(image),
            sahi_model,
            slice_height=SAHI_SLICE,
            slice_width=SAHI_SLICE,
            overlap_height_ratio=SAHI_OVERLAP,
            overlap_width_ratio=SAHI_OVERLAP,
            perform_standard_pred=standard_pred,
            postprocess_type="GREEDYNMM",
            postprocess_match_metric="IOS",
            postprocess_match_threshold=SAHI_MATCH,
            verbose=0,
            force_postprocess_type=True,
        )

    def convert(result: Any, image: np.ndarray) -> dict[str, Any]:
        return from_object_predictions(result.object_prediction_list, image.shape[:2])

    return Tool(call, convert, InputCounter(predictor.inference))


def supervision_tool(cfg: Any, model: Any, factor: float, overlap_filter: str) -> Tool:
    """supervision ``InferenceSlicer`` with its defaults (640 px slices, 100 px overlap,
    IoU 0.5) and ``overlap_filter``; every slice at the finest scale ``factor``."""
    import supervision as sv

    from sniper.integrations.supervision_convert import from_detections, supervision_callback

    predictor = _predictor(cfg, model, factor)
    slicer = sv.InferenceSlicer(
        callback=supervision_callback(predictor), overlap_filter=overlap_filter
    )
    rgb = _rgb(cfg)
    return Tool(
        lambda image: slicer(rgb(image)),
        lambda detections, _: from_detections(detections),
        InputCounter(predictor.inference),
    )


def contender_keys(thresholds: Sequence[float]) -> list[str]:
    """Every contender key, in table order (`build_tool`)."""
    keys = ["single", "sniper", "tiling", "sahi", "sahi-slices", "sv-nms", "sv-none", "af"]
    return keys + [f"af-t={t:g}" for t in thresholds]


def build_tool(key: str, cfg: Any, model: Any, tile: int = 512, overlap: int = 128) -> Tool:
    """The contender ``key`` of `contender_keys` (labels: `label`).

    Raises:
        ValueError: an unknown key.
        ImportError: sahi / supervision missing for their keys.
    """
    scales = parse_scale_list(cfg.SNIPER.TEST_SCALES)
    factor = finest_scale(scales)
    if not isinstance(factor, int | float):
        raise ValueError(f"SNIPER.TEST_SCALES {scales} has no factor to slice at")
    if key in ("single", "sniper", "tiling"):
        ours = our_contenders(cfg, model, SimpleNamespace(one_scale=-1, tile=tile, overlap=overlap))
        return _ours(list(ours.values())[("single", "sniper", "tiling").index(key)])
    if key in ("sahi", "sahi-slices"):
        return sahi_tool(cfg, model, float(factor), key == "sahi")
    if key in ("sv-nms", "sv-none"):
        return supervision_tool(
            cfg, model, float(factor), "non_max_suppression" if key == "sv-nms" else "none"
        )
    if key == "af" or key.startswith("af-t="):
        params = cascade_params_from_cfg(cfg)
        if key != "af":
            params = params.with_threshold(float(key[5:]))
        return _ours(AutoFocusCascade.from_config(cfg, model), thresholds=params.thresholds)
    raise ValueError(f"unknown contender {key!r}; known: {contender_keys([])} and af-t=<t>")


def label(key: str, cfg: Any, tile: int = 512, overlap: int = 128) -> str:
    """The table label of contender ``key``."""
    scales = parse_scale_list(cfg.SNIPER.TEST_SCALES)
    factor, one = finest_scale(scales), scales[len(scales) // 2]
    fixed = {
        "single": f"single scale {one}",
        "sniper": f"SNIPER {len(scales)} scales",
        "tiling": f"our tiling {factor}x ({tile}px, ov {overlap})",
        "sahi": f"SAHI {factor}x + full image",
        "sahi-slices": f"SAHI {factor}x slices only",
        "sv-nms": f"supervision {factor}x, NMS",
        "sv-none": f"supervision {factor}x, no filter",
        "af": f"AutoFocus t={list(cascade_params_from_cfg(cfg).thresholds)}",
    }
    return fixed.get(key, f"AutoFocus {key[3:]}")
