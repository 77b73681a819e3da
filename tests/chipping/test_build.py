"""The compiled planner: its interface version, its type stub, its C++ formatting."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import chipping
from chipping import _backend, _planner, _reference, planner

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "chipping" / "csrc"


def test_header_and_python_agree_on_the_abi_version() -> None:
    header = (CSRC / "version.h").read_text()
    (value,) = re.findall(r"constexpr int kAbiVersion = (\d+);", header)
    assert int(value) == _backend.ABI_VERSION
    assert _planner.ABI_VERSION == _backend.ABI_VERSION, "rebuild: pip install -e ."


@pytest.mark.parametrize("built", [0, None])
def test_stale_build_raises_import_error(monkeypatch: pytest.MonkeyPatch, built) -> None:
    if built is None:
        monkeypatch.delattr(_planner, "ABI_VERSION")
    else:
        monkeypatch.setattr(_planner, "ABI_VERSION", built)
    monkeypatch.setattr(_backend, "_checked", None)
    expected = (
        f"the compiled chipping._planner is stale (built from version "
        f"{'none' if built is None else built}, sources are {_backend.ABI_VERSION}): "
        f"rebuild with pip install -e ."
    )
    with pytest.raises(ImportError, match=re.escape(expected)):
        planner.plan_positive_chips(np.zeros((0, 4), np.float32), (100, 100))
    # The reference twin does not depend on the build.
    planner.plan_positive_chips(np.zeros((0, 4), np.float32), (100, 100), backend="reference")


def test_current_build_passes_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_backend, "_checked", None)
    assert _backend.backend_module("compiled") is _planner


def _stub_signatures() -> dict[str, list[str]]:
    tree = ast.parse((ROOT / "chipping" / "_planner.pyi").read_text())
    return {
        n.name: [a.arg for a in n.args.args] for n in tree.body if isinstance(n, ast.FunctionDef)
    }


def test_stub_lists_every_export_with_the_binding_arguments() -> None:
    names = [n for n in dir(_planner) if not n.startswith("_")]
    exported = {n for n in names if callable(getattr(_planner, n))}
    stub = _stub_signatures()
    assert "ABI_VERSION: int" in (ROOT / "chipping" / "_planner.pyi").read_text()
    assert set(stub) == exported
    for name, args in stub.items():
        # pybind11 signatures: "name(arg0: type, arg1: type, ...) -> dict".
        doc = getattr(_planner, name).__doc__.splitlines()[0]
        assert re.findall(r"(\w+): ", doc[doc.index("(") + 1 :]) == args, name
        # ... and the reference twin takes the same arguments.
        ref = getattr(_reference, name)
        assert list(ref.__code__.co_varnames[: ref.__code__.co_argcount]) == args, name


def test_chipping_all_is_explicit() -> None:
    source = (ROOT / "chipping" / "__init__.py").read_text()
    assert "__all__ = [\n" in source and "dir()" not in source
    assert sorted(chipping.__all__) == sorted(planner.__all__)
    assert all(hasattr(chipping, name) for name in chipping.__all__)


@pytest.mark.skipif(shutil.which("clang-format") is None, reason="clang-format not installed")
def test_csrc_is_clang_formatted() -> None:
    files = sorted(str(p) for p in CSRC.iterdir() if p.suffix in (".cpp", ".h"))
    result = subprocess.run(
        ["clang-format", "--dry-run", "--Werror", *files], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
