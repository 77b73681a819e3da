"""One error rule for every entry point: a user's mistake is one `error:` line, exit 2.

In-process: the config file reader, key types, value ranges and their messages (exact),
the preflight of model names / device / process layout, and the bounded rendezvous. As
subprocesses (slow): every entry point on bad configs, asserting exit status 2, exactly one
stderr line starting with `error:` that names the file / key / value, and no traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sniper.cli_errors import ConfigError, ConfigKeyError, cli_errors
from sniper.config import load_config_or_exit, setup_cfg
from sniper.engine.defaults import launch_train_net
from sniper.engine.preflight import check_device, check_launch, check_model_names

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def bad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of bad config files; the test runs inside it (messages use short names)."""
    files = {
        "cycle_a.yaml": "_BASE_: cycle_b.yaml\n",
        "cycle_b.yaml": "_BASE_: cycle_a.yaml\n",
        "syntax.yaml": "SOLVER:\n  BASE_LR: [0.1\n",
        "list.yaml": "- 1\n- 2\n",
        "scalar.yaml": "hello\n",
        "empty.yaml": "# only a comment\n",
        "nobase.yaml": "_BASE_: gone.yaml\n",
        "inf.yaml": "SOLVER:\n  BASE_LR: .inf\n",
        "nan.yaml": "MODEL:\n  PIXEL_MEAN: [1.0, .nan, 2.0]\n",
        "neg.yaml": "SOLVER:\n  MAX_ITER: -5\n",
        "child.yaml": "_BASE_: neg.yaml\nSOLVER:\n  BASE_LR: 1\n",
        "typo.yaml": "SOLVER:\n  BASE_LRR: 0.1\n",
        "type.yaml": "SOLVER:\n  MAX_ITER: ten\n",
        "section.yaml": "SOLVER: 3\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "binary.yaml").write_bytes(b"\x00\xff\xfe binary")
    (tmp_path / "folder.yaml").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


CASES = [
    ("missing.yaml", [], "missing.yaml: no such config file"),
    ("nobase.yaml", [], "gone.yaml: no such config file (the _BASE_ of nobase.yaml)"),
    ("folder.yaml", [], "folder.yaml: is a folder, not a YAML config file"),
    ("binary.yaml", [], "binary.yaml: not a text YAML file (byte 1 is not UTF-8)"),
    (
        "syntax.yaml",
        [],
        "syntax.yaml: line 3, column 1: YAML error: expected ',' or ']', but got '<stream end>'",
    ),
    ("list.yaml", [], "list.yaml: the top level is a list, not a mapping of KEY: value"),
    (
        "scalar.yaml",
        [],
        "scalar.yaml: the top level is a str ('hello'), not a mapping of KEY: value",
    ),
    ("empty.yaml", [], "empty.yaml: the file is empty; a config is a mapping of KEY: value"),
    (
        "cycle_a.yaml",
        [],
        "cycle_b.yaml: _BASE_ cycle: cycle_a.yaml -> cycle_b.yaml -> cycle_a.yaml",
    ),
    ("inf.yaml", [], "inf.yaml: config key SOLVER.BASE_LR = inf: must be finite (no NaN or inf)"),
    (
        "nan.yaml",
        [],
        "nan.yaml: config key MODEL.PIXEL_MEAN = [1.0, nan, 2.0]: must be finite (no NaN or inf)",
    ),
    ("neg.yaml", [], "neg.yaml: config key SOLVER.MAX_ITER = -5: must be >= 1"),
    ("child.yaml", [], "neg.yaml: config key SOLVER.MAX_ITER = -5: must be >= 1"),
    (
        "child.yaml",
        ["SOLVER.MAX_ITER", "0"],
        "command line: config key SOLVER.MAX_ITER = 0: must be >= 1",
    ),
    (
        "typo.yaml",
        [],
        "typo.yaml: unknown config key SOLVER.BASE_LRR; did you mean SOLVER.BASE_LR?",
    ),
    (
        "type.yaml",
        [],
        "type.yaml: config key SOLVER.MAX_ITER = 'ten': expected an integer (default 40000)",
    ),
    (
        "section.yaml",
        [],
        "section.yaml: config key SOLVER = 3: is a section; give its keys (AMP, BASE_LR, "
        "CHECKPOINT_PERIOD, CLIP_GRADIENTS, ...)",
    ),
    (
        "",
        ["SOLVER.BASE_LR", "abc"],
        "command line: config key SOLVER.BASE_LR = 'abc': expected a number (default 0.02)",
    ),
    (
        "",
        ["SOLVER.BASE_LR", "1e999"],
        "command line: config key SOLVER.BASE_LR = inf: must be finite (no NaN or inf)",
    ),
    (
        "",
        ["SOLVER.STEPS", "(0,)"],
        "command line: config key SOLVER.STEPS = (0,): entries must be iterations (integers >= 1)",
    ),
    (
        "",
        ["SOLVER.MOMENTUM", "1.0"],
        "command line: config key SOLVER.MOMENTUM = 1.0: must be in [0.0, 1.0)",
    ),
    (
        "",
        ["DATALOADER.NUM_WORKERS", "-1"],
        "command line: config key DATALOADER.NUM_WORKERS = -1: must be >= 0",
    ),
    (
        "",
        ["MODEL.DEVICE", "gpu"],
        'command line: config key MODEL.DEVICE = \'gpu\': must be "cpu", "cuda" or "cuda:N"',
    ),
    (
        "",
        ["MODEL.PIXEL_MEAN", "['a', 'b', 'c']"],
        "command line: config key MODEL.PIXEL_MEAN "
        "= ['a', 'b', 'c']: expected a list of numbers (default [123.675, 116.28, 103.53])",
    ),
    (
        "",
        ["NOPE.X", "1"],
        "command line: unknown config key NOPE.X (NOPE does not exist; did you mean SNIPER?)",
    ),
    (
        "",
        ["SOLVER.BASE_LR"],
        "command line: config overrides must be KEY VALUE pairs, got an "
        "odd length 1: SOLVER.BASE_LR",
    ),
]


@pytest.mark.parametrize(("path", "opts", "message"), CASES)
def test_config_errors_name_file_key_and_value(
    bad: Path, path: str, opts: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        setup_cfg(path, opts)
    assert str(err.value) == message


def test_unknown_key_is_also_a_key_error(bad: Path) -> None:
    with pytest.raises(KeyError) as err:
        setup_cfg("typo.yaml", [])
    assert isinstance(err.value, ConfigKeyError)
    assert err.value.key == "SOLVER.BASE_LRR"


def test_good_values_are_coerced(bad: Path) -> None:
    cfg = setup_cfg("", ["SOLVER.BASE_LR", "1", "OUTPUT_DIR", "2024", "SOLVER.STEPS", "[5]"])
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.OUTPUT_DIR == "2024"
    assert cfg.SOLVER.STEPS == (5,)


def test_load_config_or_exit_prints_one_line(bad: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        load_config_or_exit("cycle_a.yaml", [])
    assert exc.value.code == 2
    assert capsys.readouterr().err == (
        "error: cycle_b.yaml: _BASE_ cycle: cycle_a.yaml -> cycle_b.yaml -> cycle_a.yaml\n"
    )


def test_cli_errors_keeps_bugs(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit), cli_errors():
        open("/no/such/file.png")  # noqa: SIM115
    assert capsys.readouterr().err == "error: /no/such/file.png: no such file or directory\n"
    with pytest.raises(ZeroDivisionError), cli_errors():
        _ = 1 / 0


def test_preflight_names_and_device() -> None:
    cfg = setup_cfg("", ["MODEL.BACKBONE.NAME", "vgg"])
    with pytest.raises(ConfigError) as err:
        check_model_names(cfg)
    assert str(err.value) == (
        "config key MODEL.BACKBONE.NAME = 'vgg': unknown backbone; known: mobilenet_v2_fpn, "
        "resnet101_fpn, resnet18_fpn, resnet50_fpn"
    )
    import torch  # noqa: PLC0415 (only to know what this machine has)

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available here"):
            check_device("cuda")
    with pytest.raises(ConfigError, match=r"only \d+ CUDA device|CUDA is not available"):
        check_device("cuda:99")
    check_device("cpu")


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ((0, 1, 0, "auto"), "--num-gpus 0: must be >= 1"),
        ((-2, 1, 0, "auto"), "--num-gpus -2: must be >= 1"),
        ((1, 0, 0, "auto"), "--num-machines 0: must be >= 1"),
        ((1, 2, 2, "tcp://127.0.0.1:1"), "--machine-rank 2: must be in [0, 1] (--num-machines 2)"),
        ((1, 2, -1, "tcp://127.0.0.1:1"), "--machine-rank -1: must be in [0, 1]"),
        ((1, 2, 0, "auto"), "--dist-url auto: only works on one machine"),
        ((2, 1, 0, "tcp://127.0.0.1"), "--dist-url tcp://127.0.0.1: must be tcp://HOST:PORT"),
        (
            (3, 1, 0, "auto"),
            "config key SOLVER.IMS_PER_BATCH = 16: must be divisible by the number of "
            "processes (--num-gpus 3 x --num-machines 1 = 3)",
        ),
    ],
)
def test_launch_layout_is_checked(
    layout: tuple[int, int, int, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = setup_cfg("", [])
    with pytest.raises(ConfigError) as err:
        check_launch(cfg, *layout)
    assert str(err.value).startswith(message)


def test_unreachable_dist_url_stops_in_seconds(capsys: pytest.CaptureFixture) -> None:
    url = f"tcp://127.0.0.1:{_free_port()}"  # loopback; nobody listens there
    # --eval-only: the default config names no training set (the data checks would stop first)
    argv = ["--eval-only", "--num-machines", "2", "--machine-rank", "1", "--dist-url", url]
    start = time.monotonic()
    with pytest.raises(SystemExit) as exc:
        launch_train_net(lambda args: None, argv=[*argv, "--rendezvous-timeout", "1.5"])
    assert exc.value.code == 2
    assert 1.4 < time.monotonic() - start < 30
    assert capsys.readouterr().err == (
        f"error: --dist-url {url}: machine 1 could not reach machine 0 within 1.5 s; start "
        "machine 0 first, check the host and port, or wait longer with --rendezvous-timeout "
        "SECONDS or SNIPER_RENDEZVOUS_TIMEOUT\n"
    )


def test_rendezvous_timeout_from_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("SNIPER_RENDEZVOUS_TIMEOUT", "soon")
    with pytest.raises(SystemExit):
        launch_train_net(lambda args: None, argv=["--num-gpus", "2"])
    assert capsys.readouterr().err == (
        "error: environment variable SNIPER_RENDEZVOUS_TIMEOUT='soon': must be seconds > 0\n"
    )


def test_worker_rendezvous_is_bounded() -> None:
    from datetime import timedelta  # noqa: PLC0415

    from sniper.engine.launch import RendezvousError, init_tcp_group  # noqa: PLC0415

    url = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(RendezvousError) as err:
        init_tcp_group("gloo", url, 2, 0, timedelta(seconds=30), timedelta(seconds=1))
    assert str(err.value).startswith(
        f"--dist-url {url}: rank 0 waited 1 s for the 2 processes of the job to join"
    )


ENTRY_POINTS = {
    "sniper/train_net": [sys.executable, str(ROOT / "projects/sniper/train_net.py")],
    "autofocus/train_net": [sys.executable, str(ROOT / "projects/autofocus/train_net.py")],
    "mine_negatives": [sys.executable, str(ROOT / "projects/sniper/mine_negatives.py")],
    "demo": [sys.executable, "-m", "sniper.demo", "--input", "img", "--output", "out"],
    "visualize_cli": [sys.executable, "-m", "autofocus.visualize_cli", "--input", "img"],
    "visualize_chips": [sys.executable, str(ROOT / "tools/visualize_chips.py")],
}
SUBPROCESS_CASES = [
    (["--config-file", "missing.yaml"], "error: missing.yaml: no such config file"),
    (["--config-file", "cycle_a.yaml"], "error: cycle_b.yaml: _BASE_ cycle:"),
    (["--config-file", "inf.yaml"], "error: inf.yaml: config key SOLVER.BASE_LR = inf:"),
    (["MODEL.BACKBONE.NAME", "vgg"], "error: config key MODEL.BACKBONE.NAME = 'vgg': unknown"),
]


@pytest.mark.slow
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_every_entry_point_gives_one_line(bad: Path, entry: str) -> None:
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    (bad / "img").mkdir()
    cv2.imwrite(str(bad / "img" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cases = SUBPROCESS_CASES
    if entry == "visualize_chips":  # builds no model: the backbone name is not read
        cases = cases[:3]
    for args, start in cases:
        cmd = [*ENTRY_POINTS[entry], *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, (cmd, proc.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith(start), (cmd, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_unreachable_dist_url_through_train_net(tmp_path: Path) -> None:
    url = f"tcp://127.0.0.1:{_free_port()}"
    # --eval-only: the default config names no training set (the data checks would stop first)
    cmd = [sys.executable, str(ROOT / "projects/sniper/train_net.py"), "--eval-only"]
    cmd += [
        "--num-machines",
        "2",
        "--machine-rank",
        "1",
        "--dist-url",
        url,
        "--rendezvous-timeout",
        "2",
    ]
    cmd += ["OUTPUT_DIR", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --dist-url {url}: machine 1 could not reach machine 0 within 2 s; start "
        "machine 0 first, check the host and port, or wait longer with --rendezvous-timeout "
        "SECONDS or SNIPER_RENDEZVOUS_TIMEOUT"
    ]


def test_steps_beyond_max_iter_warn_once_and_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    # detectron2's rule: a step past MAX_ITER never happens (a shortened test run), not an
    # error; the warning is given once per process, not at every load of the same config
    opts = ["SOLVER.MAX_ITER", "7", "SOLVER.STEPS", "(5, 11)"]
    with caplog.at_level("WARNING"):
        first = setup_cfg("", opts)
        setup_cfg("", opts)
    assert first.SOLVER.STEPS == (5, 11)
    warnings = [r.getMessage() for r in caplog.records if "SOLVER.STEPS" in r.getMessage()]
    assert warnings == [
        "SOLVER.STEPS [5, 11]: [11] are beyond SOLVER.MAX_ITER = 7 and never happen"
    ]
    with pytest.raises(ConfigError, match="SOLVER.STEPS"):
        setup_cfg("", ["SOLVER.STEPS", "(0,)"])
