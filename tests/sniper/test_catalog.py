"""DatasetCatalog / Metadata / MetadataCatalog behaviour."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from sniper.data.catalog import DatasetCatalog, Metadata, MetadataCatalog

PREFIX = "test_catalog__"


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    for name in DatasetCatalog.list():
        if name.startswith(PREFIX):
            DatasetCatalog.remove(name)
    for name in ("a", "b", "meta"):
        MetadataCatalog.remove(PREFIX + name)


def test_register_get_list_remove():
    calls = []

    def loader() -> list[dict]:
        calls.append(1)
        return [{"image_id": 1}]

    DatasetCatalog.register(PREFIX + "a", loader)
    DatasetCatalog.register(PREFIX + "b", lambda: [])
    assert calls == []  # lazy
    assert DatasetCatalog.get(PREFIX + "a") == [{"image_id": 1}]
    assert DatasetCatalog.get(PREFIX + "a") == [{"image_id": 1}]
    assert calls == [1, 1]  # loader called on every get
    assert DatasetCatalog.get(PREFIX + "b") == []
    listed = DatasetCatalog.list()
    assert [n for n in listed if n.startswith(PREFIX)] == [PREFIX + "a", PREFIX + "b"]
    DatasetCatalog.remove(PREFIX + "a")
    assert PREFIX + "a" not in DatasetCatalog.list()
    assert PREFIX + "b" in DatasetCatalog.list()
    # the name is free again after removal
    DatasetCatalog.register(PREFIX + "a", lambda: [{"image_id": 2}])
    assert DatasetCatalog.get(PREFIX + "a") == [{"image_id": 2}]


def test_duplicate_name_is_an_error_naming_it():
    DatasetCatalog.register(PREFIX + "a", lambda: [])
    with pytest.raises(ValueError, match=f"dataset '{PREFIX}a' is already registered"):
        DatasetCatalog.register(PREFIX + "a", lambda: [{"x": 1}])
    assert DatasetCatalog.get(PREFIX + "a") == []  # the first registration is kept


def test_unknown_name_keyerror_lists_registered_names():
    DatasetCatalog.register(PREFIX + "a", lambda: [])
    DatasetCatalog.register(PREFIX + "b", lambda: [])
    with pytest.raises(KeyError) as info:
        DatasetCatalog.get(PREFIX + "nope")
    message = str(info.value)
    assert f"dataset '{PREFIX}nope' is not registered" in message
    assert f"{PREFIX}a, {PREFIX}b" in message


def test_remove_unknown_and_bad_registrations():
    with pytest.raises(KeyError, match="nope"):
        DatasetCatalog.remove(PREFIX + "nope")
    with pytest.raises(TypeError, match="callable"):
        DatasetCatalog.register(PREFIX + "a", [{"x": 1}])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-empty string"):
        DatasetCatalog.register("", lambda: [])
    DatasetCatalog.register(PREFIX + "b", lambda: {"not": "a list"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="returned dict, expected list"):
        DatasetCatalog.get(PREFIX + "b")


def test_metadata_set_get_as_dict():
    meta = Metadata(name="m")
    assert meta.set(thing_classes=["a", "b"], evaluator_type="coco") is meta
    assert meta.thing_classes == ["a", "b"]
    assert meta.get("evaluator_type") == "coco"
    assert meta.get("missing") is None
    assert meta.get("missing", 7) == 7
    assert meta.as_dict() == {"name": "m", "thing_classes": ["a", "b"], "evaluator_type": "coco"}
    meta.as_dict()["name"] = "changed"  # a copy
    assert meta.name == "m"
    with pytest.raises(AttributeError, match="has no attribute 'missing'; available: "):
        _ = meta.missing


def test_metadata_conflicting_set_is_an_error():
    meta = Metadata(name="m").set(thing_classes=["a", "b"], ids=np.array([1, 2]))
    meta.set(thing_classes=["a", "b"], ids=np.array([1, 2]))  # same values: fine
    meta.thing_classes = ["a", "b"]
    with pytest.raises(ValueError, match="metadata 'thing_classes' of dataset 'm' is already"):
        meta.set(thing_classes=["a", "c"])
    with pytest.raises(ValueError, match="'ids'"):
        meta.ids = np.array([1, 3])
    with pytest.raises(ValueError, match="'ids'"):
        meta.ids = [1, 2]  # a list is not the same value as an array
    with pytest.raises(ValueError, match="'name'"):
        meta.name = "other"
    assert meta.thing_classes == ["a", "b"]


def test_metadata_pickles():
    meta = Metadata(name="m").set(thing_classes=["a"])
    clone = pickle.loads(pickle.dumps(meta))
    assert clone.as_dict() == {"name": "m", "thing_classes": ["a"]}


def test_metadata_catalog_creates_on_first_access_and_removes():
    meta = MetadataCatalog.get(PREFIX + "meta")
    assert meta.as_dict() == {"name": PREFIX + "meta"}
    meta.set(thing_classes=["x"])
    assert MetadataCatalog.get(PREFIX + "meta") is meta
    assert MetadataCatalog.get(PREFIX + "meta").thing_classes == ["x"]
    MetadataCatalog.remove(PREFIX + "meta")
    fresh = MetadataCatalog.get(PREFIX + "meta")
    assert fresh is not meta
    assert fresh.get("thing_classes") is None
    MetadataCatalog.remove(PREFIX + "never-created")  # no error
