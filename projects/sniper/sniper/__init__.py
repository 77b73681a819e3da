"""SNIPER: efficient multi-scale training on chips (Faster R-CNN + FPN from torchvision)."""

__version__ = "0.1.0"
