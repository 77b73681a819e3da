"""Adapters to the tools users of small-object detection already run: SAHI and supervision.

Optional: ``import sniper`` never loads them. Install the extras
(``pip install "sniper-autofocus[sahi]"``, ``"sniper-autofocus[supervision]"``) and import
the modules themselves:

- ``sniper.integrations.detections_dict``: the one check of our output dict (no extra).
- ``sniper.integrations.supervision_convert``: our output <-> ``supervision.Detections``.
- ``sniper.integrations.sahi_convert``: our output <-> lists of SAHI ``ObjectPrediction``.
- ``sniper.integrations.sahi_model``: ``SniperDetectionModel``, a SAHI ``DetectionModel``
  running any of our predictors on each slice (``sahi.predict.get_sliced_prediction``).
- ``sniper.integrations.sahi_cli``: SAHI's own command line with ``--model_type sniper``
  (``python -m sniper.integrations.sahi_cli predict ...``).
"""
