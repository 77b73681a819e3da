"""AutoFocus: FocusPixel head and coarse-to-fine FocusChip inference (docs/design.md section 5).

Modules (import them directly; importing the package itself loads nothing heavy):

- `autofocus.config`: `add_autofocus_config`, `setup_cfg` (the `AUTOFOCUS` node).
- `autofocus.targets`: FocusPixel labels of a training chip.
- `autofocus.head`: the FocusPixel head and its loss.
- `autofocus.modeling`: `AutoFocusRCNN` (in sniper's `META_ARCH_REGISTRY`) and
  `build_autofocus_model`, the builder the trainer, predictor and benchmark use.
- `autofocus.data`: chip mapper adding FocusPixel boxes, the training loader.
- `autofocus.engine`: `AutoFocusTrainer` (sniper's trainer, cascade evaluation).
- `autofocus.params`, `autofocus.structures`, `autofocus.chips`, `autofocus.cascade`: the
  inference cascade (parameters, records, geometry, engine).
- `autofocus.predictor`: `AutoFocusPredictor` (one image in, detections out).
- `autofocus.cli`: command-line helpers of the visualizer and the benchmark.
- `autofocus.visualization`: drawing; `autofocus.visualize_cli`: its command line
  (`python -m autofocus.visualize_cli`).
- `autofocus.focus_stats`: the FocusChips' missing rate and empty rate (numpy only).
- `autofocus.calibration`: calibrated thresholds; `autofocus.calibrate`: its command line
  (`python -m autofocus.calibrate`).
"""

__version__ = "0.1.0"
