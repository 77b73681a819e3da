"""Fixtures shared by the sniper tests."""

from __future__ import annotations

import pytest

from sniper.data.catalog import DatasetCatalog, MetadataCatalog
from sniper.data.synthetic import SYNTHETIC_SPLITS


def _clear_synthetic() -> None:
    for name in SYNTHETIC_SPLITS:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


@pytest.fixture()
def clean_synthetic(tmp_path, monkeypatch):
    """No built-in dataset registered before or after; their cache root in tmp_path."""
    monkeypatch.setenv("SNIPER_DATASETS", str(tmp_path / "datasets"))
    _clear_synthetic()
    yield
    _clear_synthetic()
