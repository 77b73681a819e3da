"""`python -m sniper.demo` and `python -m autofocus.visualize_cli` as a user runs them:
output folder checked before any work, missing and non-regular inputs warned about and
counted, exit 2 when nothing is readable, results kept on Ctrl-C.

The subprocess tests are `slow` (each start imports torch: 20 s on a loaded CI machine);
the default suite runs the same cases in-process (`main(argv)`), with an alarm so that a
FIFO that blocks fails the test instead of hanging it. The detectors are tiny random-weight
models (no weights file exists here)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from autofocus import visualize_cli
from sniper import demo
from sniper.data.catalog import DatasetCatalog, MetadataCatalog
from sniper.data.synthetic import SYNTHETIC_SPLITS

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "MODEL.BACKBONE.NAME",
    "mobilenet_v2_fpn",
    "MODEL.FPN.OUT_CHANNELS",
    "16",
    "MODEL.ROI_BOX_HEAD.FC_DIM",
    "32",
    "MODEL.NUM_CLASSES",
    "3",
    "MODEL.RPN.PRE_NMS_TOPK_TEST",
    "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "100",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
    "SNIPER.TEST_SCALES",
    "[1.5, 1.0, [64, 96]]",
    "DATASETS.TEST",
    "()",
]
AUTOFOCUS_TINY = [
    "MODEL.META_ARCHITECTURE",
    "AutoFocusRCNN",
    *TINY[:-4],
    "AUTOFOCUS.HEAD_CHANNELS",
    "8",
    "AUTOFOCUS.SCALES",
    "[[64, 64], 1.0]",
    "AUTOFOCUS.VALID_RANGES",
    "[[40, -1], [-1, 40]]",
    "AUTOFOCUS.THRESHOLDS",
    "[0.0]",
    "AUTOFOCUS.DILATIONS",
    "[1]",
    "AUTOFOCUS.MIN_SIZES",
    "[2]",
]


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


def _write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        image = np.random.default_rng(i).integers(0, 256, (64, 80, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / name), image)


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


@pytest.fixture()
def alarm():
    """Fail (instead of hanging) a test still running after 120 s."""

    def expire(signum, frame):
        raise TimeoutError("the CLI blocked for 120 s")

    before = signal.signal(signal.SIGALRM, expire)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, before)


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


@pytest.fixture()
def demo_main(clean_synthetic):
    """`sniper.demo.main` with the built-in datasets' cache in tmp_path and one torch thread."""

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield demo
    torch.set_num_threads(threads)


def _exit_line(capsys, call) -> str:
    with pytest.raises(SystemExit) as info:
        call()
    assert info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_demo_main_refuses_unusable_outputs_and_no_inputs(tmp_path, demo_main, capsys) -> None:
    _write_images(tmp_path / "in", ["a.png"])
    regular = tmp_path / "taken.json"
    regular.write_text("keep")

    def run(inputs: list[str], output: Path):
        return lambda: demo_main.main(["--input", *inputs, "--output", str(output), *TINY])

    line = _exit_line(capsys, run([str(tmp_path / "in")], regular))
    assert line == f"error: --output '{regular}': exists and is not a folder"
    line = _exit_line(capsys, run([str(tmp_path / "in")], regular / "sub"))
    assert line.startswith(f"error: --output '{regular}/sub': cannot create the folder")
    line = _exit_line(capsys, run([str(tmp_path / "gone.png")], tmp_path / "out"))
    assert line == (
        f"error: no input image matched {tmp_path}/gone.png (1 skipped: "
        f"{tmp_path}/gone.png: no such file)"
    )
    assert regular.read_text() == "keep" and not (tmp_path / "out").exists()


def test_demo_main_probes_writability_before_building_the_model(
    tmp_path, demo_main, capsys, monkeypatch
) -> None:
    """A read-only mount (root ignores modes, so the refusal is faked): one line, nothing run."""

    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the output folder was checked")

    _write_images(tmp_path / "in", ["a.png"])
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(demo_main, "SniperPredictor", no_model)
    argv = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "ro"), *TINY]
    line = _exit_line(capsys, lambda: demo_main.main(argv))
    assert line == (
        f"error: --output '{tmp_path}/ro': the folder is not writable (Read-only file system)"
    )


def test_demo_main_fifo_missing_unreadable_and_ctrl_c(
    tmp_path, demo_main, capsys, caplog, monkeypatch, alarm
) -> None:
    folder = tmp_path / "in"
    _write_images(folder, ["a.png", "b.png", "c.png"])
    os.mkfifo(folder / "pipe.png")
    (folder / "bad.jpg").write_bytes(b"not a jpeg")
    missing = str(tmp_path / "missing.png")
    out = tmp_path / "out"
    argv = ["--input", str(folder), missing, "--output", str(out), *TINY]
    torch.manual_seed(0)
    with caplog.at_level(logging.INFO):
        assert demo_main.main(argv) == 0
    err = caplog.text
    assert f"skipping {folder}/pipe.png: not a regular file (a FIFO), not opened" in err
    assert f"skipping {missing}: no such file" in err
    assert f"skipping {folder}/bad.jpg: missing, unreadable, empty or not an image" in err
    assert "3 of 6 images (3 skipped, 0 drawings not written)" in err
    results = json.loads((out / "results.json").read_text())
    assert {r["image_id"] for r in results} == {"a", "b", "c"}
    assert sorted(os.listdir(out)) == ["a.png", "b.png", "c.png", "results.json"]

    # Ctrl-C while the third image is drawn: the first two are saved, exit 130.
    draw, calls = demo_main.draw_detections, []

    def interrupt_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return draw(*args, **kwargs)

    monkeypatch.setattr(demo_main, "draw_detections", interrupt_third)
    interrupted = tmp_path / "interrupted"
    argv = ["--input", str(folder), "--output", str(interrupted), *TINY]
    torch.manual_seed(0)
    assert demo_main.main(argv) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"interrupted: results of 2 of 4 images saved in {interrupted}/results.json"
    kept = json.loads((interrupted / "results.json").read_text())
    assert {r["image_id"] for r in kept} == {"a", "b"}
    assert [r for r in results if r["image_id"] in ("a", "b")] == kept  # same model, same seed
    assert sorted(os.listdir(interrupted)) == ["a.png", "b.png", "results.json"]

    line = _exit_line(
        capsys,
        lambda: demo_main.main(
            ["--input", f"{folder}/bad.jpg", "--output", str(tmp_path / "o3"), *TINY]
        ),
    )
    assert line == (
        f"error: none of the 1 inputs could be read ({folder}/bad.jpg: missing, unreadable, "
        f"empty or not an image); {tmp_path}/o3/results.json is empty"
    )


@pytest.mark.usefixtures("clean_synthetic")
def test_visualize_cli_main_refuses_an_output_file_and_no_inputs(tmp_path, capsys) -> None:
    folder = tmp_path / "in"
    _write_images(folder, ["good.png"])
    regular = tmp_path / "taken"
    regular.write_text("keep")
    missing = str(tmp_path / "missing.png")

    def argv(inputs: list[str], output: Path) -> list[str]:
        words = [w for item in inputs for w in ("--input", item)]
        return ["--config-file", "", *words, "--output", str(output), *AUTOFOCUS_TINY]

    line = _exit_line(capsys, lambda: visualize_cli.main(argv([str(folder)], regular)))
    assert line == f"error: --output '{regular}': exists and is not a folder"
    line = _exit_line(capsys, lambda: visualize_cli.main(argv([missing], tmp_path / "o1")))
    assert line == f"error: no input image in {missing} ({missing}: no such file)"
    assert regular.read_text() == "keep"


@pytest.mark.usefixtures("clean_synthetic")
def test_visualize_cli_main_skips_fifo_and_missing(tmp_path, caplog, alarm) -> None:
    folder = tmp_path / "in"
    _write_images(folder, ["good.png"])
    os.mkfifo(folder / "pipe.png")
    missing = str(tmp_path / "missing.png")
    words = ["--input", str(folder), "--input", missing, "--output", str(tmp_path / "out")]
    with caplog.at_level(logging.INFO):
        assert visualize_cli.main(["--config-file", "", *words, *AUTOFOCUS_TINY]) == 0
    assert f"skipping {folder}/pipe.png: not a regular file (a FIFO), not opened" in caplog.text
    assert f"skipping {missing}: no such file" in caplog.text
    assert "1 images drawn" in caplog.text and "2 skipped" in caplog.text
    assert os.listdir(tmp_path / "out") == ["good_autofocus.png"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--confidence", "nan"], "--confidence nan: must be a score in [0, 1]"),
        (["--confidence", "1.5"], "--confidence 1.5: must be a score in [0, 1]"),
        (["--tile-size", "0"], "--tile-size 0: must be >= 32"),
        (["--max-pixels", "-1"], "--max-pixels -1: must be >= 0"),
        (["--tile-overlap", "-4"], "--tile-overlap -4: must be >= 0"),
    ],
)
def test_demo_numeric_flags_are_checked_first(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--input", str(tmp_path / "x.png"), "--output", str(tmp_path / "out"), *flags]
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "out").exists()  # nothing done before the check
