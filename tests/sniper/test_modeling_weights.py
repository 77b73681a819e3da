"""Backbone weights: local files, the offline package file, torchvision's cache, errors."""

from __future__ import annotations

import importlib.metadata
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from sniper.modeling.backbone import BACKBONE_REGISTRY
from sniper.modeling.weights import (
    OFFLINE_PACKAGE,
    OFFLINE_WEIGHTS_FILE,
    fetch_state_dict,
    load_trunk_weights,
    offline_weights_path,
)


def _has_offline_package() -> bool:
    try:
        importlib.metadata.distribution(OFFLINE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_offline = pytest.mark.skipif(
    not _has_offline_package(), reason=f"{OFFLINE_PACKAGE} is not installed"
)


def _saved_resnet18(tmp_path: Path, wrap: str | None) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    state["layer2.0.conv1.weight"].fill_(0.125)
    payload: object = state
    if wrap == "module":
        payload = {f"module.{k}": v for k, v in state.items()}
    elif wrap is not None:
        payload = {wrap: state, "iteration": 7}
    path = tmp_path / "r18.pth"
    torch.save(payload, path)
    return path, state


@pytest.mark.parametrize("wrap", [None, "model", "state_dict", "module"])
def test_local_file_loads_into_the_backbone(tmp_path: Path, wrap: str | None) -> None:
    path, state = _saved_resnet18(tmp_path, wrap)
    backbone = BACKBONE_REGISTRY.get("resnet18_fpn")(
        norm="FrozenBN", freeze_at=1, weights=str(path), out_channels=16, min_level=2, use_p6=True
    )
    assert torch.equal(backbone.body["layer2"][0].conv1.weight, state["layer2.0.conv1.weight"])
    assert torch.equal(backbone.body["conv1"].weight, state["conv1.weight"])
    assert torch.equal(backbone.body["bn1"].running_var, state["bn1.running_var"])


def test_load_reports_missing_and_unexpected_keys(tmp_path: Path) -> None:
    path, state = _saved_resnet18(tmp_path, None)
    partial = {k: v for k, v in state.items() if not k.startswith("fc.")}
    partial["extra.weight"] = torch.zeros(1)
    torch.save(partial, path)
    missing, unexpected = load_trunk_weights(torchvision.models.resnet18(), "resnet18", str(path))
    assert sorted(missing) == ["fc.bias", "fc.weight"]
    assert unexpected == ["extra.weight"]


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        fetch_state_dict("resnet18", str(missing))


def test_wrong_architecture_is_rejected(tmp_path: Path) -> None:
    path, _ = _saved_resnet18(tmp_path, None)
    with pytest.raises(ValueError, match="share no parameter"):
        load_trunk_weights(torchvision.models.mobilenet_v2(), "mobilenet_v2", str(path))


def test_empty_source_is_random_init() -> None:
    assert fetch_state_dict("resnet18", "") is None
    assert load_trunk_weights(torchvision.models.resnet18(), "resnet18", "") == ([], [])


@needs_offline
def test_offline_package_file_is_found_and_loads() -> None:
    path = offline_weights_path()
    assert path.name == OFFLINE_WEIGHTS_FILE and path.is_file()
    model = torchvision.models.mobilenet_v2()
    assert load_trunk_weights(model, "mobilenet_v2", "offline") == ([], [])


def test_offline_is_only_for_mobilenet() -> None:
    with pytest.raises(ValueError, match="mobilenet_v2"):
        fetch_state_dict("resnet50", "offline")


@needs_offline
def test_torchvision_source_reads_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(offline_weights_path(), tmp_path / "checkpoints" / OFFLINE_WEIGHTS_FILE)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    state = fetch_state_dict("mobilenet_v2", "torchvision")
    assert state is not None and "features.0.0.weight" in state


def test_torchvision_source_fails_clearly_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth") as info:
        fetch_state_dict("resnet18", "torchvision")
    assert str(tmp_path) in str(info.value) and "no network" in str(info.value)
