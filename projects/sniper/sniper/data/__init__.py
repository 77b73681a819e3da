"""Datasets, the built-in synthetic dataset, the per-epoch chip sampler and the chip mapper."""
