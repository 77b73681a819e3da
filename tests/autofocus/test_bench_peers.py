"""benchmarks/bench_peers.py on a tiny COCO-json dataset and a random model: every contender's
row (pixels and forward passes counted by hand), the table, json and plot; SAHI and
supervision rows run when the packages are installed and are skipped rows otherwise."""

from __future__ import annotations

import json

import pytest
import torch
from bench_fakes import TINY_AUTOFOCUS, load_benchmark, write_tiny_dataset
from engine_fakes import unregister, write_coco_dataset

TINY = [
    *TINY_AUTOFOCUS,
    "SNIPER.TEST_SCALES",
    "[1.0, [80, 80]]",
    "SNIPER.TEST_VALID_RANGES",
    "[[-1, 30], [30, -1]]",
]
COARSE, FINE = 60 * 80, 120 * 160  # the 120 x 160 image at long side 80 and at 1.0x
SAHI = 384 * 512  # SAHI's model input size 1.0 * 512: the whole image (one slice) at long side 512
KEYS = ["single", "sniper", "tiling", "sahi", "sahi-slices", "sv-nms", "sv-none", "af"]
# (network-input pixels, forward passes) per image of every contender
EXPECTED = {
    "single": (COARSE, 1),
    "sniper": (FINE + COARSE, 2),
    "tiling": (FINE, 1),  # under the 512 ** 2 tile budget: one input
    "sahi": (SAHI, 1),  # one slice (the image is under 512 px): SAHI then skips the full pass
    "sahi-slices": (SAHI, 1),
    "sv-nms": (FINE, 1),  # one 640 px slice, cut to the image, at 1.0x
    "sv-none": (FINE, 1),
    "af": (COARSE + FINE, 2),  # t = 0: every FocusPixel fires
    "af-t=0": (COARSE + FINE, 2),
    "af-t=1": (COARSE, 1),  # t = 1: the cascade stops after the coarse scale
}


def _bench():
    return load_benchmark("bench_peers")


@pytest.fixture
def dataset(tmp_path):
    name = f"peers_bench_{tmp_path.name}"
    write_tiny_dataset(tmp_path / "data", name, 2)
    yield name
    unregister(name)


def _main(bench, dataset, out, *extra):
    torch.manual_seed(0)
    before = torch.get_num_threads()
    try:
        return bench.main(
            ["--config-file", "", *TINY, "--dataset", dataset, "--num-images", "1"]
            + ["--thresholds", "0", "1", "--in-process", "--threads", "1", "--output", str(out)]
            + list(extra)
        )
    finally:
        torch.set_num_threads(before)


def test_every_contender_row_table_json_and_plot(dataset, tmp_path, capsys) -> None:
    bench = _bench()
    rows = _main(bench, dataset, tmp_path / "out")
    assert [r["key"] for r in rows] == [*KEYS, "af-t=0", "af-t=1"]
    for r in rows:
        reason = bench.missing_peer(r["key"])
        if reason:  # sahi / supervision not installed: a row saying why
            assert r["skipped"] == reason and "pip install" in reason
            continue
        pixels, passes = EXPECTED[r["key"]]
        assert (r["mpix_per_image"] * 1e6, r["forward_passes_per_image"]) == (
            pytest.approx(pixels),
            passes,
        ), r["key"]
        # no large object: no APl (None in the json); the random model finds nothing
        assert [r[m] for m in bench.METRICS] == [0.0, 0.0, 0.0, 0.0, None]
        assert r["seconds_per_image"] > 0 and r["peak_rss_gib"] > 0 and r["images"] == 1
    saved = json.loads((tmp_path / "out" / "bench_peers.json").read_text())
    assert saved["dataset"] == dataset and saved["images"] == 1 and saved["rows"] == rows
    assert (tmp_path / "out" / "bench_peers.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "MP/img" in printed and "passes" in printed and "RSS GiB" in printed


def test_counter_agrees_with_the_engines_own_pixels(dataset) -> None:
    """The counted inputs of our engines equal the pixels the engine reports itself."""
    bench = _bench()
    args = bench.parse_args(["--config-file", "", *TINY, "--dataset", dataset])
    torch.manual_seed(0)
    cfg, model, records = bench.setup(args)
    import peer_engines

    from sniper.engine.evaluation import load_image

    image = load_image(records[0]["file_name"], cfg.INPUT.FORMAT)
    for key in ("single", "sniper", "af-t=0", "af-t=1"):
        tool = peer_engines.build_tool(key, cfg, model)
        with torch.no_grad():
            out = tool.call(image)
        assert tool.counter.pixels == out["pixels"] == EXPECTED[key][0], key


def test_missing_package_rows_are_skipped_with_the_reason(dataset, tmp_path, monkeypatch) -> None:
    bench = _bench()
    monkeypatch.setitem(bench.PEERS, "sahi", "no_such_package_for_peers")
    rows = _main(bench, dataset, tmp_path / "out", "--contenders", "single", "sahi")
    assert [r["key"] for r in rows] == ["single", "sahi"]
    assert rows[1]["skipped"].startswith("no_such_package_for_peers is not installed")
    assert "AP" in rows[0] and "skipped" not in rows[0]


def test_unknown_contender_is_an_error_naming_it(dataset) -> None:
    bench = _bench()
    args = bench.parse_args(["--config-file", "", *TINY, "--dataset", dataset])
    cfg, model, _ = bench.setup(args)
    import peer_engines

    with pytest.raises(ValueError, match="unknown contender 'sahii'"):
        peer_engines.build_tool("sahii", cfg, model)


def test_bad_contender_or_empty_dataset_is_one_error_line(dataset, tmp_path, capsys) -> None:
    bench = _bench()
    with pytest.raises(SystemExit) as exc:
        _main(bench, dataset, tmp_path / "out", "--contenders", "single", "sahii", "af-t=x")
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "--contenders: unknown ['sahii', 'af-t=x']" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        _main(bench, dataset, tmp_path / "out2", "--num-images", "0")
    assert f"--dataset {dataset}: no image to benchmark" in capsys.readouterr().err


@pytest.mark.slow
def test_each_contender_in_its_own_process(tmp_path) -> None:
    """Without --in-process every row comes from a fresh child (--register-coco reaches it)."""
    name = f"peers_child_{tmp_path.name}"
    write_coco_dataset(tmp_path / "data", name, [(120, 160)], {0: [([20, 30, 40, 30], 0)]})
    unregister(name)  # the children register it from the flag, as a user's run does
    coco = ["--register-coco", name, str(tmp_path / "data" / "instances.json")]
    coco.append(str(tmp_path / "data" / "images"))
    bench = _bench()
    try:
        rows = bench.main(
            ["--config-file", "", *TINY, "--dataset", name, *coco, "--threads", "1"]
            + ["--contenders", "single", "af-t=1", "--output", str(tmp_path / "out")]
        )
    finally:
        unregister(name)
    assert [(r["key"], r["method"]) for r in rows] == [
        ("single", "single scale (80.0, 80.0)"),
        ("af-t=1", "AutoFocus t=1"),
    ]
    for r in rows:
        assert "skipped" not in r, r
        assert (r["mpix_per_image"] * 1e6, r["forward_passes_per_image"]) == (
            pytest.approx(EXPECTED[r["key"]][0]),
            EXPECTED[r["key"]][1],
        )
