"""The scale advisor: the rule on hand-made box sets, the planner measures, the CLI (synthetic
mini dataset, printed YAML accepted by the config loaders, one-line errors)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from autofocus.config import setup_cfg as autofocus_setup_cfg
from sniper.config import setup_cfg
from sniper.tools.scale_advice import AdviceParams, DatasetBoxes, advice_yaml, suggest_scales
from sniper.tools.scale_report import measure_scales
from sniper.tools.suggest_scales import YAML_MARKER, main


def _squares(sizes: list[float], image_size: tuple[int, int]) -> DatasetBoxes:
    """One image holding a square box of each size at the origin."""
    boxes = np.array([[0, 0, s, s] for s in sizes], dtype=np.float32)
    return DatasetBoxes(boxes, np.array([0, len(boxes)]), np.array([image_size]))


def test_coco_like_sizes_give_the_paper_scales() -> None:
    """p5 = 8 px, p95 = 330 px on a 640 x 480 image: f_small = 53.33 / 8 = 6.667 is capped
    at 2000 / 640 = 3.125; f_large = 250 / 330 = 0.7576 (the 330 px box fits a chip up to
    480 / 330 = 1.45x); ratio 3.125 / 0.7576 = 4.125 and adjacent factors at most
    sqrt(250 / 53.33) = 2.165 apart -> 3 scales: 3.125, 3.125 / sqrt(4.125) = 1.539, 0.7576."""
    data = _squares([8.0] * 20 + [50.0] * 160 + [330.0] * 20, (480, 640))
    advice = suggest_scales(data)
    assert advice.size_percentiles == (8.0, 330.0)
    assert advice.capped and advice.cap == 3.125
    assert advice.train_scales == (3.125, 1.539, 0.7576)
    # [L / f, H / f) rounded to 0.1: 250 / 3.125, 53.33 / 1.539, 250 / 1.539, 53.33 / 0.7576
    assert advice.valid_ranges == ((0.0, 80.0), (34.7, 162.4), (70.4, math.inf))
    assert advice.test_scales == advice.train_scales
    assert advice.test_valid_ranges == ((0.0, 96.0), (28.9, 194.9), (58.7, math.inf))
    assert advice.focus_scales == (0.7576, 1.539, 3.125)
    assert advice.focus_ranges == ((58.7, math.inf), (28.9, 194.9), (0.0, 96.0))
    assert advice.focus_sizes == (4.2, 53.3, 75.0)


def test_narrow_spread_gives_one_scale_in_the_middle() -> None:
    """Sizes 40 and 60 px: f_small = 53.33 / 40 = 1.333 <= f_large = 250 / 60 = 4.167, so one
    scale, sqrt(4.167 * 1.333) = 2.357 (40 -> 94, 60 -> 141 chip px), all sizes valid."""
    data = _squares([40.0] * 50 + [60.0] * 50, (400, 400))
    advice = suggest_scales(data)
    assert not advice.capped
    assert advice.train_scales == (2.357,)
    assert advice.valid_ranges == ((0.0, math.inf),)


def test_largest_box_limits_the_coarsest_scale_and_num_scales_is_honoured() -> None:
    """p95 = 50 px would allow 250 / 50 = 5x, but the 960 px box fits a 512 chip only up to
    480 / 960 = 0.5x; p5 = 10 px -> 5.333x, capped at 2000 / 1000 = 2.0. Two scales asked:
    2.0 and 0.5, ranges [0, 125) and [106.7, inf)."""
    data = _squares([10.0] * 20 + [50.0] * 180 + [960.0], (1000, 1000))
    advice = suggest_scales(data, AdviceParams(num_scales=2))
    assert advice.largest_box_side == 960.0
    assert advice.train_scales == (2.0, 0.5)
    assert advice.valid_ranges == ((0.0, 125.0), (106.7, math.inf))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("band", (250.0, 53.0), "band = "),
        ("band", (10.0, 600.0), "H <= chip_size"),
        ("percentiles", (95.0, 5.0), "percentiles = "),
        ("num_scales", -1, "num_scales = -1"),
        ("test_widen", 0.5, "test_widen = 0.5"),
        ("max_side", 0.0, "max_side = 0.0"),
        ("chip_stride", 512, "chip_stride = 512"),
    ],
)
def test_bad_params_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdviceParams(**{field: value})


def test_records_without_boxes_are_an_error() -> None:
    records = [{"boxes": np.zeros((0, 4), np.float32), "height": 10, "width": 10}]
    with pytest.raises(ValueError, match="toy: no boxes of positive size in 1 images"):
        DatasetBoxes.from_records(records, "toy")
    with pytest.raises(ValueError, match="toy: the dataset has no images"):
        DatasetBoxes.from_records([], "toy")


def test_measures_count_chips_boxes_and_pixels() -> None:
    """1024 x 1024 image, boxes A (10 px, top left), B (10 px, bottom right), C (600 px).

    Scale 1.0 [0, 100): A and B need one chip each, [0, 512)^2 and [512, 1024)^2; scale 0.5
    [100, inf): C becomes 300 px, the one 512 x 512 canvas chip holds it."""
    boxes = np.array([[0, 0, 10, 10], [1000, 1000, 1010, 1010], [0, 0, 600, 600]], dtype=np.float32)
    data = DatasetBoxes(boxes, np.array([0, 3]), np.array([[1024, 1024]]))
    m = measure_scales(data, [1.0, 0.5], [(0.0, 100.0), (100.0, math.inf)])
    assert m.valid_per_scale.tolist() == [2, 1]
    assert (m.valid_none, m.positive_none) == (0, 0)
    assert m.chips_per_scale.tolist() == [2, 1]
    assert m.chip_pixels == 3 * 512 * 512
    assert m.image_pixels_per_scale.tolist() == [1024 * 1024, 512 * 512]
    one = measure_scales(data, [1.0], [(0.0, 100.0)])
    assert (one.valid_none, one.positive_none) == (1, 1)  # C: valid at no scale
    assert one.chips_per_scale.tolist() == [2]


@pytest.mark.parametrize("num_scales", [1, 3, 4])
def test_printed_yaml_is_accepted_by_the_config_loaders(tmp_path, num_scales: int) -> None:
    data = _squares([4.0] * 20 + [50.0] * 160 + [400.0] * 20, (480, 640))
    advice = suggest_scales(data, AdviceParams(num_scales=num_scales))
    both, sniper_only = tmp_path / "both.yaml", tmp_path / "sniper.yaml"
    both.write_text(advice_yaml(advice))
    sniper_only.write_text(advice_yaml(advice, autofocus=False))
    cfg = autofocus_setup_cfg(str(both), [])
    assert cfg.SNIPER.TRAIN_SCALES == list(advice.train_scales)
    assert len(cfg.AUTOFOCUS.THRESHOLDS) == num_scales - 1
    assert cfg.AUTOFOCUS.POS_MAX_SIZE == 53.3
    assert setup_cfg(str(sniper_only), []).SNIPER.TEST_SCALES == list(advice.test_scales)


@pytest.fixture(scope="module")
def mini_root(tmp_path_factory):
    """`synthetic_digits_mini` cached in a temporary folder, registered only meanwhile."""
    from sniper.data.catalog import DatasetCatalog, MetadataCatalog
    from sniper.data.synthetic import SYNTHETIC_SPLITS

    def clear() -> None:
        for name in SYNTHETIC_SPLITS:
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)

    root = str(tmp_path_factory.mktemp("datasets"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SNIPER_DATASETS", root)
        clear()
        yield root
        clear()


def test_cli_on_the_synthetic_mini_dataset(mini_root, tmp_path, capsys) -> None:
    from sniper.data.catalog import DatasetCatalog

    assert main(["--dataset", "synthetic_digits_mini"]) == 0
    out = capsys.readouterr().out
    report, block = out.split(YAML_MARKER + "\n")
    records = DatasetCatalog.get("synthetic_digits_mini")
    data = DatasetBoxes.from_records(records, "mini")
    advice = suggest_scales(data)
    assert block == advice_yaml(advice)
    m = measure_scales(data, advice.train_scales, advice.valid_ranges)
    n_boxes = sum(len(r["boxes"]) for r in records)
    assert f"dataset synthetic_digits_mini: 8 images, {n_boxes} boxes" in report
    chips = f"positive chips per image: {m.chips_per_scale.sum() / 8:.2f} (512 x 512)"
    assert chips in report
    path = tmp_path / "advice.yaml"
    path.write_text(block)
    cfg = autofocus_setup_cfg(str(path), [])
    assert cfg.SNIPER.TRAIN_SCALES == list(advice.train_scales)


def _coco(tmp_path, annotations: list | None) -> str:
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 100, "width": 100}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    if annotations is not None:
        data["annotations"] = annotations
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_cli_json_without_images_on_disk(tmp_path, capsys) -> None:
    ann = [{"id": i, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20]} for i in range(3)]
    assert main(["--json", _coco(tmp_path, ann)]) == 0
    out = capsys.readouterr().out
    assert "1 images, 3 boxes" in out
    assert "TRAIN_SCALES: [" in out


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "error: --json {path}: no such file"),
        ("no_key", "error: {path}: missing top-level key 'annotations'"),
        ("empty", "error: {path}: no boxes of positive size in 1 images"),
        ("unknown", "error: dataset 'nope' is not registered"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case: str, message: str) -> None:
    if case == "missing":
        args = ["--json", str(tmp_path / "none.json")]
    elif case == "unknown":
        args = ["--dataset", "nope"]
    else:
        args = ["--json", _coco(tmp_path, None if case == "no_key" else [])]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(message.format(path=args[-1]))
