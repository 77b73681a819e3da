"""`python -m sniper.demo` and `python -m autofocus.visualize_cli` as a user runs them:
output folder checked before any work, missing and non-regular inputs warned about and
counted, exit 2 when nothing is readable, results kept on Ctrl-C.

The subprocess twins (`slow`: each start imports torch) are in
test_demo_outputs_subprocess.py; here the same cases run in-process (`main(argv)`), with an
alarm so that a FIFO that blocks fails the test instead of hanging it. The detectors are
tiny random-weight models (no weights file exists here)."""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
from pathlib import Path

import pytest
import torch
from demo_fakes import AUTOFOCUS_TINY, TINY
from demo_fakes import write_images as _write_images

from autofocus import visualize_cli
from sniper import demo


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
