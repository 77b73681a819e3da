"""`python -m sniper.demo` and `python -m autofocus.visualize_cli` as subprocesses, as a user
runs them (slow: each start imports torch); the same cases run in-process in
test_demo_outputs.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from demo_fakes import AUTOFOCUS_TINY, TINY
from demo_fakes import write_images as _write_images

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    paths = [ROOT, ROOT / "projects" / "sniper", ROOT / "projects" / "autofocus"]
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), env.get("PYTHONPATH", "")])
    env["SNIPER_DATASETS"] = str(tmp_path / "datasets")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(tmp_path: Path, module: str, *args: str, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _demo(tmp_path: Path, inputs: list[str], output: Path, *opts: str, timeout: float = 120):
    return _run(
        tmp_path,
        "sniper.demo",
        "--input",
        *inputs,
        "--output",
        str(output),
        *TINY,
        *opts,
        timeout=timeout,
    )


def _error_line(proc) -> str:
    """The one line the CLI printed to stderr (no traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr, proc.stderr
    return lines[-1]


@pytest.mark.slow
def test_demo_output_a_regular_file_or_uncreatable_is_one_line(tmp_path) -> None:
    _write_images(tmp_path / "in", ["a.png"])
    regular = tmp_path / "taken.json"
    regular.write_text("keep")
    proc = _demo(tmp_path, [str(tmp_path / "in")], regular)
    assert proc.returncode == 2
    assert _error_line(proc) == f"error: --output '{regular}': exists and is not a folder"
    proc = _demo(tmp_path, [str(tmp_path / "in")], regular / "sub")
    assert proc.returncode == 2
    assert _error_line(proc).startswith(f"error: --output '{regular}/sub': cannot create the")
    assert regular.read_text() == "keep"


@pytest.mark.slow
def test_demo_all_inputs_missing_is_exit_2(tmp_path) -> None:
    proc = _demo(tmp_path, [str(tmp_path / "a.png"), str(tmp_path / "b.png")], tmp_path / "out")
    assert proc.returncode == 2
    assert _error_line(proc) == (
        f"error: no input image matched {tmp_path}/a.png {tmp_path}/b.png (2 skipped: "
        f"{tmp_path}/a.png: no such file, ...)"
    )
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


@pytest.mark.slow
def test_demo_skips_missing_files_and_fifos_and_keeps_the_good_one(tmp_path) -> None:
    folder = tmp_path / "in"
    _write_images(folder, ["good.png"])
    os.mkfifo(folder / "pipe.png")  # opening it would block forever
    missing = str(tmp_path / "missing.png")
    out = tmp_path / "out"
    proc = _demo(tmp_path, [str(folder), missing], out, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"skipping {folder}/pipe.png: not a regular file (a FIFO), not opened" in proc.stderr
    assert f"skipping {missing}: no such file" in proc.stderr
    assert "1 of 3 images (2 skipped" in proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results and {r["image_id"] for r in results} == {"good"}
    assert sorted(os.listdir(out)) == ["good.png", "results.json"]  # no temporaries


@pytest.mark.slow
def test_demo_no_readable_input_is_exit_2(tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "bad.jpg").write_bytes(b"not a jpeg")
    proc = _demo(tmp_path, [str(folder)], tmp_path / "out")
    assert proc.returncode == 2
    assert _error_line(proc) == (
        f"error: none of the 2 inputs could be read ({folder}/bad.jpg: missing, unreadable, "
        f"empty or not an image, ...); {tmp_path}/out/results.json is empty"
    )
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == []


@pytest.mark.slow
def test_demo_ctrl_c_keeps_the_results_of_the_images_done(tmp_path) -> None:
    names = [f"img{i:02d}.png" for i in range(40)]
    _write_images(tmp_path / "in", names)
    out = tmp_path / "out"
    args = ["--input", str(tmp_path / "in"), "--output", str(out), *TINY]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sniper.demo", *args],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            path = out / "results.json"
            if path.is_file() and json.loads(path.read_text()):  # always valid json
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the demo ended before it was interrupted"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    saved = int(last.split("results of ")[1].split(" of ")[0])
    assert last == f"interrupted: results of {saved} of 40 images saved in {out}/results.json"
    assert 1 <= saved < 40
    results = json.loads((out / "results.json").read_text())
    assert {r["image_id"] for r in results} == {n[:-4] for n in names[:saved]}
    drawn = sorted(n for n in os.listdir(out) if n != "results.json")
    assert drawn[:saved] == names[:saved] and not [n for n in drawn if n.startswith(".")]


def _visualize(tmp_path: Path, inputs: list[str], output: Path):
    words = [w for item in inputs for w in ("--input", item)]
    return _run(
        tmp_path,
        "autofocus.visualize_cli",
        "--config-file",
        "",
        *words,
        "--output",
        str(output),
        *AUTOFOCUS_TINY,
    )


@pytest.mark.slow
def test_visualize_cli_output_file_missing_inputs_and_fifo(tmp_path) -> None:
    folder = tmp_path / "in"
    _write_images(folder, ["good.png"])
    os.mkfifo(folder / "pipe.png")
    regular = tmp_path / "taken"
    regular.write_text("keep")
    proc = _visualize(tmp_path, [str(folder)], regular)
    assert proc.returncode == 2
    assert _error_line(proc) == f"error: --output '{regular}': exists and is not a folder"
    missing = str(tmp_path / "missing.png")
    proc = _visualize(tmp_path, [missing], tmp_path / "out")
    assert proc.returncode == 2
    assert _error_line(proc) == (f"error: no input image in {missing} ({missing}: no such file)")
    proc = _visualize(tmp_path, [str(folder), missing], tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"skipping {folder}/pipe.png: not a regular file (a FIFO)" in proc.stderr
    assert f"skipping {missing}: no such file" in proc.stderr
    assert os.listdir(tmp_path / "out") == ["good_autofocus.png"]


# In-process versions (default suite).
