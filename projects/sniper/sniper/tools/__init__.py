"""Tools run with ``python -m sniper.tools.<name>`` and the library modules behind them.

- ``suggest_scales`` (CLI): scales and valid ranges for a dataset, from its box sizes;
  the rule is in ``sniper.tools.scale_advice``, the measurements in
  ``sniper.tools.scale_report``.
"""
