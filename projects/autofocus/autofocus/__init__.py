"""AutoFocus: FocusPixel head and coarse-to-fine inference on FocusChips."""

__version__ = "0.1.0"
