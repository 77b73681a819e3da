"""Fuzz suite of the public planner API (tests/helpers/planner_fuzz.py), in subprocesses.

A batch fails on a crash (non-zero or signal exit of its process), an exception other than a
``ValueError`` naming the argument, or a call over 1 s of CPU time. The default suite runs a
short batch; the ``slow`` test runs >= 1e6 calls in parallel batches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[1] / "helpers" / "planner_fuzz.py"


def run_batch(seed: int, calls: int) -> dict:
    out = subprocess.run(
        [sys.executable, str(FUZZ), "--seed", str(seed), "--calls", str(calls)],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode in (0, 1), f"batch {seed} crashed (exit {out.returncode}): {out.stderr}"
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["failures"] == [], f"batch {seed}: {report['failures']}"
    assert out.returncode == 0
    return report


def test_fuzz_short() -> None:
    report = run_batch(seed=12345, calls=1500)
    assert report["calls"] >= 1500


@pytest.mark.slow
def test_fuzz_million_calls() -> None:
    batches, per_batch = 50, 20_000
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        reports = list(pool.map(lambda s: run_batch(s, per_batch), range(batches)))
    assert sum(r["calls"] for r in reports) >= 1_000_000
