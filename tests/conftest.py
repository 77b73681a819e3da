"""Root fixtures of the test suite.

* Tests marked ``gpu`` are skipped, with a reason, when ``torch.cuda.is_available()`` is
  false. (``pyproject.toml`` deselects ``gpu`` and ``slow`` tests by default; ``-m gpu``
  selects them.)
* Every test runs between a save and a restore of the global state tests tend to touch: the
  RNGs of Python's ``random``, numpy's legacy global generator and torch (CPU, and CUDA
  when it is initialized), and the logging configuration (level, handlers, filters,
  ``propagate`` and ``disabled`` of the root logger and of the project's loggers, plus
  ``logging.disable``). Handlers a test added are removed and closed (pytest's own capture
  handlers excepted).
"""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

LOGGER_NAMES = ("", "sniper", "autofocus", "chipping", "fvcore")  # "" is the root logger

GPU_SKIP_REASON = "needs a CUDA device (torch.cuda.is_available() is False)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason=GPU_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


def _save_rng() -> tuple:
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda  # noqa: NPY002


def _restore_rng(state: tuple) -> None:
    py, npy, cpu, cuda = state
    random.setstate(py)
    np.random.set_state(npy)  # noqa: NPY002 (the legacy global RNG is what tests touch)
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _save_logging() -> tuple:
    loggers = {}
    for name in LOGGER_NAMES:
        logger = logging.getLogger(name)
        loggers[name] = (
            logger.level,
            list(logger.handlers),
            list(logger.filters),
            logger.propagate,
            logger.disabled,
        )
    return loggers, logging.root.manager.disable


def _is_pytest_handler(handler: logging.Handler) -> bool:
    """pytest's own capture handlers come and go per test phase; they are left alone."""
    return type(handler).__module__.startswith("_pytest")


def _restore_logging(state: tuple) -> None:
    loggers, disable = state
    for name, (level, handlers, filters, propagate, disabled) in loggers.items():
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if h not in handlers]:
            if not _is_pytest_handler(handler):
                logger.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in logger.handlers and not _is_pytest_handler(handler):
                logger.addHandler(handler)
        logger.filters[:] = filters
        logger.setLevel(level)
        logger.propagate, logger.disabled = propagate, disabled
    logging.disable(disable)


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Save the RNG and logging state before each test, restore it after (module doc)."""
    rng, log = _save_rng(), _save_logging()
    try:
        yield
    finally:
        _restore_logging(log)
        _restore_rng(rng)
