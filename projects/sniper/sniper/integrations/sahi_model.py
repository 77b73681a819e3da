"""``SniperDetectionModel``: any of our predictors as a SAHI ``DetectionModel`` (extra
``[sahi]``).

SAHI cuts the image into slices, gives each slice (RGB, ``(h, w, 3)`` uint8) to
``perform_inference`` / ``perform_batch_inference``, converts what comes back with the
slice's ``shift_amount`` (its top-left in image px) and the full image's ``full_shape``, and
merges (GREEDYNMM / NMS). This adapter runs our predictor on each slice, keeps the
detections with score ``> confidence_threshold`` (SAHI's strict rule) and hands them over as
``ObjectPrediction`` in slice px with that shift (``sahi_convert.to_object_predictions``);
SAHI adds the shift once (``get_shifted_object_prediction``). Classes are our contiguous
ids 0..C-1; ``category_mapping`` defaults to ``{"0": name0, ...}`` from the
``thing_classes`` of ``cfg.DATASETS.TEST[0]`` (``sniper.inputs.dataset_labels``), else the
ids as text. Masks (a model with a mask head) become SAHI polygons; when the predictor
returns ``mask_patches`` / ``mask_boxes`` they are pasted again at SAHI's
``mask_threshold`` (our paste rule, ``sniper.inference.mask_patches``).

Built from files (``load_model``, what ``AutoDetectionModel`` and ``sahi predict`` do):
``config_path`` is our YAML config, ``model_path`` its weights (``MODEL.WEIGHTS``),
``device`` ``MODEL.DEVICE``, and the predictor a single-scale ``SniperPredictor``
(``single_scale_predictor``): one ``scale`` (default ``1.0``, the slice as it is; SAHI's
``image_size`` N means ``(N, N)``, long side N), no range filter, hard NMS, RGB input.
Or give a built predictor: ``SniperDetectionModel(model=predictor)``.

``register_model_type()`` adds ``model_type="sniper"`` to SAHI's ``AutoDetectionModel``;
``python -m sniper.integrations.sahi_cli`` is SAHI's command line with it registered.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from chipping.scales import ScaleSpec, scale_specs
from sniper.cli_errors import ConfigError
from sniper.config import setup_cfg
from sniper.image_ops import check_image
from sniper.inference.mask_patches import patches_to_rle
from sniper.inputs import dataset_labels

from ._optional import import_optional
from .sahi_convert import to_object_predictions
from .single_scale import import_attr, single_scale_predictor

__all__ = ["SniperDetectionModel", "register_model_type"]

DetectionModel = import_optional("sahi.models.base", "sahi").DetectionModel
MODEL_TYPE = "sniper"


class SniperDetectionModel(DetectionModel):
    """SAHI ``DetectionModel`` running one of our predictors on each slice (module doc).

    Args:
        model_path: weights file (``MODEL.WEIGHTS``); ``None`` keeps the config's.
        model: a built predictor instead of files: a callable of one uint8 ``(h, w, 3)``
            image returning our detections dict in its px (``input_format`` attribute:
            the channel order it wants, default RGB); ``predict_batch`` is used when present.
        config_path: our YAML config (``load_model``).
        device: ``MODEL.DEVICE`` (``None``: the config's).
        mask_threshold, confidence_threshold, category_mapping, category_remapping,
        load_at_init: SAHI's (``DetectionModel``).
        image_size: SAHI's input size; N is the scale ``(N, N)`` unless ``scale`` is given.
        scale: the one test scale of ``load_model``'s predictor (default 1.0).
        opts: further config overrides ``[KEY, VALUE, ...]`` for ``load_model``.
        predictor_class: dotted path of the predictor class ``load_model`` builds
            (default ``sniper.inference.SniperPredictor``).
        config_setup: dotted path of the ``(config_file, opts) -> cfg`` function reading
            ``config_path`` (default ``sniper.config.setup_cfg``; an AutoFocus config needs
            ``autofocus.config.setup_cfg``).
        modules: dotted module names imported before building (e.g. ``autofocus.modeling``,
            which registers ``AutoFocusRCNN``, to run a trained AutoFocus detector).
    """

    def __init__(
        self,
        model_path: str | None = None,
        model: Any | None = None,
        config_path: str | None = None,
        device: str | None = None,
        mask_threshold: float = 0.5,
        confidence_threshold: float = 0.3,
        category_mapping: dict | None = None,
        category_remapping: dict | None = None,
        load_at_init: bool = True,
        image_size: int | None = None,
        scale: ScaleSpec | None = None,
        opts: Sequence[str] | None = None,
        predictor_class: str | None = None,
        config_setup: str | None = None,
        modules: Sequence[str] | None = None,
    ) -> None:
        if image_size is not None and (
            isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
        ):
            raise ConfigError(f"image_size must be a positive integer, got {image_size!r}")
        if scale is None:
            scale = (image_size, image_size) if image_size is not None else 1.0
        try:  # a factor or a (short, long) pair, checked as every test scale is
            (self.scale,) = scale_specs([tuple(scale) if isinstance(scale, list) else scale])
        except (TypeError, ValueError) as err:
            raise ConfigError(f"scale: {err}") from err
        self.opts = [str(v) for v in (opts or [])]
        if len(self.opts) % 2:
            raise ConfigError(f"opts must be KEY VALUE pairs, got {len(self.opts)} items")
        self.predictor_class = predictor_class
        self.config_setup = config_setup
        self.modules = [modules] if isinstance(modules, str) else list(modules or [])
        self.requested_device = device
        self.input_format = "RGB"
        self._slice_sizes: list[tuple[int, int]] = []
        super().__init__(
            model_path=model_path,
            model=model,
            config_path=config_path,
            device=device,
            mask_threshold=mask_threshold,
            confidence_threshold=confidence_threshold,
            category_mapping=category_mapping,
            category_remapping=category_remapping,
            load_at_init=load_at_init,
            image_size=image_size,
        )

    def load_model(self) -> None:
        """Build the single-scale predictor of ``config_path`` / ``model_path`` / ``device``.

        Raises:
            ValueError: (``sniper.cli_errors.ConfigError``) no ``config_path``, a bad config,
                ``predictor_class``, ``config_setup`` or ``modules``.
            FileNotFoundError: ``model_path`` does not exist.
        """
        if not self.config_path:
            raise ConfigError("SniperDetectionModel needs config_path: our YAML config file")
        opts = list(self.opts)
        if self.model_path:
            opts += ["MODEL.WEIGHTS", str(self.model_path)]
        if self.requested_device is not None:
            opts += ["MODEL.DEVICE", str(self.device)]
        for name in self.modules:
            try:
                importlib.import_module(name)
            except ImportError as err:
                raise ConfigError(f"modules: {name!r} cannot be imported: {err}") from err
        setup = import_attr(self.config_setup, "config_setup") if self.config_setup else setup_cfg
        cfg = setup(str(self.config_path), opts)
        cls = None
        if self.predictor_class:
            cls = import_attr(self.predictor_class, "predictor_class")
        self.set_model(single_scale_predictor(cfg, self.scale, "RGB", cls))

    def set_model(self, model: Any, **kwargs: Any) -> None:
        """Use ``model`` (a predictor, see the class doc); fill ``category_mapping`` from its
        ``cfg`` (``thing_classes`` of ``DATASETS.TEST[0]``, else ids ``0..NUM_CLASSES-1``).

        Raises:
            ValueError: ``model`` is not callable or wants a channel order other than
                RGB / BGR.
        """
        if not callable(model):
            raise ValueError(f"model must be a callable predictor, got {type(model).__name__}")
        input_format = getattr(model, "input_format", "RGB")
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f'model.input_format must be "RGB" or "BGR", got {input_format!r}')
        self.model = model
        self.input_format = input_format
        cfg = getattr(model, "cfg", None)
        if self.category_mapping is None and cfg is not None:
            names, _ = dataset_labels(list(cfg.DATASETS.TEST))
            if names is None:
                names = [str(i) for i in range(int(cfg.MODEL.NUM_CLASSES))]
            self.category_mapping = {str(i): name for i, name in enumerate(names)}

    def _slice(self, image: np.ndarray) -> np.ndarray:
        image = check_image(image)
        if self.input_format == "BGR":
            image = np.ascontiguousarray(image[:, :, ::-1])
        return image

    def perform_inference(self, image: np.ndarray) -> None:
        """Run the predictor on one RGB uint8 ``(h, w, 3)`` slice (raw output kept)."""
        if self.model is None:
            raise RuntimeError("SniperDetectionModel has no model: call load_model or set_model")
        self._slice_sizes = [tuple(image.shape[:2])]
        self._original_predictions = [self.model(self._slice(image))]

    def perform_batch_inference(self, images: list[np.ndarray]) -> None:
        """Run the predictor on several slices at once (``predict_batch`` when it has one)."""
        if self.model is None:
            raise RuntimeError("SniperDetectionModel has no model: call load_model or set_model")
        self._batch_images = None  # ours runs now; the base class would defer per image
        self._slice_sizes = [tuple(image.shape[:2]) for image in images]
        slices = [self._slice(image) for image in images]
        batch: Callable | None = getattr(self.model, "predict_batch", None)
        if batch is not None:
            self._original_predictions = list(batch(slices))
        else:
            self._original_predictions = [self.model(s) for s in slices]

    @property
    def num_categories(self) -> int:
        """Number of categories of ``category_mapping`` (0 when unknown)."""
        return len(self.category_mapping or {})

    @property
    def has_mask(self) -> bool:
        """Whether the last predictions carry masks."""
        preds = self._original_predictions or []
        return any("masks" in out for out in preds)

    @property
    def category_names(self) -> list[str]:
        """Category names in id order."""
        return list((self.category_mapping or {}).values())

    def _kept(self, out: Mapping[str, Any], size: tuple[int, int]) -> dict[str, Any]:
        """The detections with score > confidence_threshold; masks at ``mask_threshold``."""
        keep = np.flatnonzero(np.asarray(out["scores"], np.float64) > self.confidence_threshold)
        kept = {k: np.asarray(out[k])[keep] for k in ("boxes", "scores", "classes")}
        if "mask_patches" in out and "mask_boxes" in out and self.mask_threshold != 0.5:
            patches = np.asarray(out["mask_patches"])[keep]
            boxes = np.asarray(out["mask_boxes"])[keep]
            kept["masks"] = patches_to_rle(patches, boxes, size, self.mask_threshold)
        elif "masks" in out:
            kept["masks"] = [out["masks"][i] for i in keep]
        return kept

    def _names(self, classes: np.ndarray) -> list[str]:
        mapping = self.category_mapping or {}
        top = int(classes.max()) + 1 if classes.size else 0
        return [str(mapping.get(str(k), k)) for k in range(top)]

    def _create_object_prediction_list_from_original_predictions(
        self,
        shift_amount_list: list[list[int | float]] | None = None,
        full_shape_list: list[list[int | float]] | None = None,
    ) -> None:
        """``ObjectPrediction`` lists (slice px + shift) of the last predictions, one per
        slice; ``shift_amount_list`` ``[[shift_x, shift_y], ...]`` and ``full_shape_list``
        ``[[height, width], ...]`` as SAHI gives them (a single pair is accepted too)."""
        preds = self._original_predictions or []
        shifts = shift_amount_list if shift_amount_list is not None else [[0, 0]]
        if len(shifts) == 2 and not isinstance(shifts[0], list | tuple):
            shifts = [shifts]
        shapes = full_shape_list
        if shapes is not None and len(shapes) == 2 and not isinstance(shapes[0], list | tuple):
            shapes = [shapes]
        if len(shifts) != len(preds) or (shapes is not None and len(shapes) != len(preds)):
            raise ValueError(
                f"{len(preds)} slices but {len(shifts)} shifts and "
                f"{'no' if shapes is None else len(shapes)} full shapes"
            )
        per_image = []
        for i, out in enumerate(preds):
            kept = self._kept(out, self._slice_sizes[i])
            shape = None if shapes is None else [int(v) for v in shapes[i]]
            per_image.append(
                to_object_predictions(
                    kept,
                    self._names(kept["classes"]),
                    shift_amount=[int(v) for v in shifts[i]],
                    full_shape=shape,
                )
            )
        self._object_prediction_list_per_image = per_image


def register_model_type(name: str = MODEL_TYPE) -> None:
    """Make ``AutoDetectionModel.from_pretrained(model_type=name)`` (and so ``sahi.predict.
    predict(model_type=name)``) build a ``SniperDetectionModel``: SAHI looks the class up
    as ``sahi.models.<name>.SniperDetectionModel``."""
    auto_model = import_optional("sahi.auto_model", "sahi")
    auto_model.MODEL_TYPE_TO_MODEL_CLASS_NAME[name] = SniperDetectionModel.__name__
    sys.modules[f"sahi.models.{name}"] = sys.modules[__name__]
