"""The root conftest: gpu tests skip without CUDA, RNG and logging state is restored per test.

Runs pytest in a subprocess on a temporary project holding a copy of ``tests/conftest.py`` and
the pytest options of ``pyproject.toml``, with CUDA hidden (``CUDA_VISIBLE_DEVICES=""``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

INNER_TESTS = """
import logging
import random

import numpy as np
import pytest
import torch

BEFORE = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
NAMES = ("", "sniper", "autofocus", "chipping")


def _logging_state():  # pytest's own capture handlers differ between collection and tests
    return [(logging.getLogger(n).level,
             [h for h in logging.getLogger(n).handlers
              if not type(h).__module__.startswith("_pytest")],
             logging.getLogger(n).propagate) for n in NAMES]


LOGGING_BEFORE = _logging_state()


def test_1_changes_global_state():
    random.seed(1); random.random()
    np.random.seed(2); np.random.rand(3)
    torch.manual_seed(3); torch.rand(3)
    for name in NAMES:
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL)
        logger.addHandler(logging.StreamHandler())
        logger.propagate = False


def test_2_sees_the_state_of_before(caplog):
    assert random.getstate() == BEFORE[0]
    assert (np.random.get_state()[1] == BEFORE[1]).all()
    assert torch.equal(torch.get_rng_state(), BEFORE[2])
    assert _logging_state() == LOGGING_BEFORE
    with caplog.at_level(logging.INFO, logger="sniper"):
        logging.getLogger("sniper.data").info("still reaches caplog")
    assert "still reaches caplog" in caplog.text


@pytest.mark.gpu
def test_needs_a_gpu():
    assert torch.cuda.is_available()


@pytest.mark.slow
def test_slow():
    raise AssertionError("slow tests are deselected by default: this must never run")
"""


def _inner_project(tmp_path: Path) -> Path:
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    options = options["ini_options"]
    markers = "\n".join(f"    {m}" for m in options["markers"])
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\naddopts = {options['addopts']}\nmarkers =\n{markers}\n"
    )
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    return tmp_path


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", *args]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return _inner_project(tmp_path_factory.mktemp("inner"))


def test_state_is_restored_and_gpu_slow_are_deselected_by_default(project) -> None:
    run = _pytest(project, "-v")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "test_2_sees_the_state_of_before PASSED" in run.stdout
    assert "2 passed, 2 deselected" in run.stdout


def test_gpu_tests_skip_with_a_reason_without_cuda(project) -> None:
    run = _pytest(project, "-m", "gpu")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped, 3 deselected" in run.stdout
    assert "needs a CUDA device" in run.stdout
