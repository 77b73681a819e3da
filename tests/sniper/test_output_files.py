"""sniper.output_files (output-folder check, atomic writes, ResultsWriter) and the input
listing rules of sniper.inputs for files that are not regular files."""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile

import cv2
import numpy as np
import pytest

from sniper.inputs import file_problem, list_image_files, read_images
from sniper.output_files import (
    OutputDirError,
    ResultsWriter,
    atomic_write,
    atomic_write_image,
    atomic_write_json,
    check_output_dir,
)


def test_check_output_dir_creates_the_folder_and_leaves_nothing(tmp_path) -> None:
    out = tmp_path / "a" / "b"
    assert check_output_dir(str(out)) == str(out)
    assert out.is_dir() and os.listdir(out) == []
    assert check_output_dir(str(out)) == str(out)  # an existing empty folder is fine


def test_check_output_dir_rejects_a_file_and_a_folder_under_a_file(tmp_path) -> None:
    regular = tmp_path / "results.txt"
    regular.write_text("x")
    with pytest.raises(OutputDirError, match=r"^--output '.*results\.txt': exists and is not a"):
        check_output_dir(str(regular))
    with pytest.raises(OutputDirError, match=r"^--out .*results\.txt/sub.: cannot create the"):
        check_output_dir(str(regular / "sub"), flag="--out")
    with pytest.raises(OutputDirError, match="empty"):
        check_output_dir("")
    assert regular.read_text() == "x"


def test_check_output_dir_probes_writability(tmp_path, monkeypatch) -> None:
    """The machine runs as root, which ignores modes: fake the refusal of a read-only mount."""

    def refuse(*args, **kwargs):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputDirError, match=r"'.*ro': the folder is not writable \(Read-only"):
        check_output_dir(str(tmp_path / "ro"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_check_output_dir_rejects_a_read_only_folder(tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    with pytest.raises(OutputDirError, match="not writable"):
        check_output_dir(str(folder))
    with pytest.raises(OutputDirError, match="cannot create"):
        check_output_dir(str(folder / "sub"))


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path) -> None:
    path = tmp_path / "results.json"
    atomic_write_json(str(path), [1, 2])

    def interrupted(f) -> None:
        f.write(b"[3, ")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(path), interrupted)
    assert json.loads(path.read_text()) == [1, 2]
    assert os.listdir(tmp_path) == ["results.json"]  # no temporary left


def test_atomic_write_image_round_trips_and_rejects_unknown_formats(tmp_path) -> None:
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    atomic_write_image(str(tmp_path / "a.png"), image)
    assert np.array_equal(cv2.imread(str(tmp_path / "a.png")), image)
    with pytest.raises(ValueError, match=r"'\.nope' for '.*b\.nope'"):
        atomic_write_image(str(tmp_path / "b.nope"), image)
    assert os.listdir(tmp_path) == ["a.png"]


def test_results_writer_rewrites_after_the_first_image_then_when_due(tmp_path) -> None:
    path = tmp_path / "results.json"
    writer = ResultsWriter(str(path), every_s=3600)
    assert json.loads(path.read_text()) == []
    writer.add([{"image_id": "a"}])
    assert json.loads(path.read_text()) == [{"image_id": "a"}]  # the first image at once
    writer.add([])
    writer.add([{"image_id": "c"}, {"image_id": "c"}])
    assert json.loads(path.read_text()) == [{"image_id": "a"}]  # not due yet
    assert (writer.images, writer.saved_images) == (3, 1)
    writer.close()
    assert json.loads(path.read_text()) == [{"image_id": "a"}, {"image_id": "c"}, {"image_id": "c"}]
    assert writer.saved_images == 3 and os.listdir(tmp_path) == ["results.json"]
    every = ResultsWriter(str(tmp_path / "every.json"), every_s=0)
    every.add([{"k": 1}])
    every.add([{"k": 2}])
    assert json.loads((tmp_path / "every.json").read_text()) == [{"k": 1}, {"k": 2}]
    with pytest.raises(ValueError, match="every_s"):
        ResultsWriter(str(tmp_path / "x.json"), every_s=float("nan"))


@pytest.fixture()
def odd_folder(tmp_path):
    """good.png, a FIFO pipe.png, a socket sock.png, a zero-byte empty.png, a corrupt bad.jpg,
    a link dir.png to a folder and a broken link gone.png."""
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.png"), np.full((6, 7, 3), 9, np.uint8))
    os.mkfifo(folder / "pipe.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "sock.png"))
    (folder / "empty.png").write_bytes(b"")
    (folder / "bad.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "sub").mkdir()
    os.symlink(tmp_path / "sub", folder / "dir.png")
    os.symlink(tmp_path / "nowhere", folder / "gone.png")
    yield folder
    sock.close()


def test_listing_keeps_only_regular_files_and_names_the_others(odd_folder, caplog) -> None:
    f = str(odd_folder)
    skipped: list[str] = []
    with caplog.at_level(logging.WARNING, logger="sniper.inputs"):
        paths = list_image_files([f, f"{f}/missing.png"], skipped)
    assert paths == [f"{f}/bad.jpg", f"{f}/empty.png", f"{f}/good.png"]
    assert skipped == [
        f"{f}/dir.png: a folder, not an image file",
        f"{f}/gone.png: broken symbolic link",
        f"{f}/pipe.png: not a regular file (a FIFO), not opened",
        f"{f}/sock.png: not a regular file (a socket), not opened",
        f"{f}/missing.png: no such file",
    ]
    assert all(f"skipping {s}" in caplog.text for s in skipped)
    assert list_image_files([f"{f}/*.png"]) == [f"{f}/empty.png", f"{f}/good.png"]
    with pytest.raises(FileNotFoundError, match=r"pipe\.png \(1 skipped: .*a FIFO"):
        list_image_files([f"{f}/pipe.png"])
    assert file_problem("/dev/null") == "not a regular file (a device), not opened"


def test_read_images_never_opens_a_fifo_and_counts_every_skip(odd_folder) -> None:
    f = str(odd_folder)
    skipped: list[str] = []
    names = ["pipe.png", "empty.png", "good.png", "bad.jpg", "missing.png"]
    read = list(read_images([f"{f}/{n}" for n in names], "RGB", skipped))
    assert [p for p, _ in read] == [f"{f}/good.png"] and read[0][1].shape == (6, 7, 3)
    unreadable = "missing, unreadable, empty or not an image"
    assert skipped == [
        f"{f}/pipe.png: not a regular file (a FIFO), not opened",
        f"{f}/empty.png: {unreadable}",
        f"{f}/bad.jpg: {unreadable}",
        f"{f}/missing.png: no such file",
    ]
