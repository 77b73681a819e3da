"""FocusPixel labels on hand-made boxes: exact maps (stride 16, a, b, c = 5, 64, 90 chip px)."""

from __future__ import annotations

import pytest
import torch

from autofocus.targets import focus_pixel_labels, focus_pixel_labels_batch

ABC = (5.0, 64.0, 90.0)


def _labels(boxes, map_size=(4, 4), **kwargs) -> torch.Tensor:
    return focus_pixel_labels(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), map_size, 16, *ABC, **kwargs
    )


def test_positive_ignore_and_cell_edges() -> None:
    labels = _labels(
        [
            [0, 0, 20, 20],  # size 20: positive, spills into cells 0 and 1 on both axes
            [40, 40, 44, 43],  # size 3.5 <= a: ignore, inside cell (2, 2)
            [16, 48, 32, 64],  # size 16, edges on cell borders: exactly cell (y=3, x=1)
        ]
    )
    expected = torch.tensor(
        [
            [1, 1, 0, 0],
            [1, 1, 0, 0],
            [0, 0, -1, 0],
            [0, 1, 0, 0],
        ]
    )
    assert labels.dtype == torch.int64
    assert torch.equal(labels, expected)


def test_positive_wins_over_the_ignore_band() -> None:
    labels = _labels([[0, 0, 64, 64], [20, 20, 30, 30]])  # size 64 = b -> ignore; size 10
    expected = torch.full((4, 4), -1)
    expected[1, 1] = 1
    assert torch.equal(labels, expected)


def test_size_thresholds_are_strict_where_the_design_says() -> None:
    assert torch.equal(_labels([[0, 0, 5, 5]])[0, 0], torch.tensor(-1))  # size a: ignore
    assert torch.equal(_labels([[0, 0, 5.01, 5.01]])[0, 0], torch.tensor(1))  # just above a
    assert torch.equal(_labels([[0, 0, 63.9, 63.9]]), torch.ones(4, 4, dtype=torch.int64))
    assert torch.equal(_labels([[0, 0, 89.9, 89.9]]), torch.full((4, 4), -1))  # [b, c)
    assert torch.equal(_labels([[0, 0, 90, 90]]), torch.zeros(4, 4, dtype=torch.int64))  # >= c


def test_given_sizes_override_the_clipped_extent() -> None:
    box = [[0, 0, 10, 10]]  # clipped to the chip; the object itself is larger
    assert torch.equal(_labels(box, sizes=torch.tensor([100.0])), torch.zeros(4, 4).long())
    ignore = _labels(box, sizes=torch.tensor([70.0]))
    assert ignore[0, 0] == -1 and (ignore.flatten()[1:] == 0).all()


def test_ignore_regions_make_cells_ignore_unless_positive() -> None:
    labels = _labels([[36, 0, 46, 10]], ignore_boxes=torch.tensor([[33.0, 0.0, 64.0, 15.0]]))
    expected = torch.zeros(4, 4, dtype=torch.int64)
    expected[0, 2], expected[0, 3] = 1, -1
    assert torch.equal(labels, expected)


def test_degenerate_and_no_boxes_give_negatives() -> None:
    assert torch.equal(_labels([[10, 10, 10, 30]]), torch.zeros(4, 4, dtype=torch.int64))
    assert torch.equal(_labels([], map_size=(2, 3)), torch.zeros(2, 3, dtype=torch.int64))


def test_non_square_map_and_boxes_beyond_it() -> None:
    labels = focus_pixel_labels(torch.tensor([[70.0, 20.0, 100.0, 40.0]]), (2, 5), 16, *ABC)
    expected = torch.zeros(2, 5, dtype=torch.int64)
    expected[1, 4] = 1  # x 70..100 -> cells 4 (64..80) and beyond the map; y 20..40 -> row 1
    assert torch.equal(labels, expected)


def test_batch_prefers_focus_boxes_and_falls_back_to_boxes() -> None:
    plain = {
        "boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0]]),
        "ignore_boxes": torch.tensor([[48.0, 48.0, 64.0, 64.0]]),
    }
    focus = {
        "boxes": torch.zeros(0, 4),
        "ignore_boxes": torch.tensor([[0.0, 0.0, 64.0, 64.0]]),
        "focus_boxes": torch.tensor([[32.0, 0.0, 40.0, 10.0]]),
        "focus_sizes": torch.tensor([8.0]),
        "focus_ignore_boxes": torch.zeros(0, 4),
    }
    labels = focus_pixel_labels_batch([plain, focus], (4, 4), 16, *ABC)
    assert labels.shape == (2, 4, 4)
    expected_plain = torch.zeros(4, 4, dtype=torch.int64)
    expected_plain[:2, :2], expected_plain[3, 3] = 1, -1
    expected_focus = torch.zeros(4, 4, dtype=torch.int64)
    expected_focus[0, 2] = 1  # SNIPER's ignore_boxes are not used when focus boxes are given
    assert torch.equal(labels[0], expected_plain)
    assert torch.equal(labels[1], expected_focus)


def test_bad_thresholds_and_sizes_are_errors() -> None:
    with pytest.raises(ValueError, match="0 <= a < b <= c"):
        focus_pixel_labels(torch.zeros(0, 4), (2, 2), 16, 10.0, 5.0, 90.0)
    with pytest.raises(ValueError, match="2 sizes for 1 boxes"):
        _labels([[0, 0, 8, 8]], sizes=torch.tensor([1.0, 2.0]))
