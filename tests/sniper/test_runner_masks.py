"""Mask patches through the inference runner: every surviving detection keeps its own patch
through the inner-edge cut, tiling, de-duplication, clipping, the range filter and the
cross-scale merge; a seam-cut object gets the mask of the tile that sees it whole; mapping
a patch to image px equals pasting it in input px and resizing; no mask keys without a
mask head."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from sniper.inference import MultiScaleInference
from sniper.inference.mask_patches import paste_patch
from tests.helpers.mask_fakes import MaskFakeDetector, assert_own_patches, spy_on_detections


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _scene() -> np.ndarray:
    """200 x 240: green blobs of many sizes (two red: class 2), some at the image edge."""
    image = np.zeros((200, 240, 3), np.uint8)
    for x1, y1, x2, y2 in [
        (10, 10, 30, 26),
        (60, 20, 110, 90),
        (0, 120, 14, 150),
        (150, 150, 240, 200),
        (126, 40, 160, 70),
        (40, 150, 48, 158),
    ]:
        image[y1:y2, x1:x2, 1] = 255
    yy, xx = np.mgrid[:200, :240]
    image[((xx - 190) ** 2 + (yy - 60) ** 2) < 25**2, 1] = 255  # a disc
    image[150:200, 150:240, 0] = 255  # class 2 (red at its first pixel)
    return image


@pytest.mark.parametrize("merge", ["soft", "nms"])
def test_every_survivor_keeps_its_own_patch_across_scales_and_tiles(merge) -> None:
    model = MaskFakeDetector()
    engine = MultiScaleInference(
        model,
        scales=[0.5, 1.0, 2.0],
        valid_ranges=[[-1, -1], [-1, -1], [-1, -1]],
        merge=merge,
        top_k=0,
        max_pixels=160 * 160,  # the 2x canvas (400 x 480) runs as tiles
        tile_size=160,
        tile_overlap=100,
    )
    table = spy_on_detections(engine)
    image = _scene()
    (out,) = engine([image])
    assert out["inputs_per_scale"][0] == 1 and out["inputs_per_scale"][2] > 4
    assert 0 < len(out["boxes"]) < model.detections  # the merge chose among scales and tiles
    assert set(out["classes"].tolist()) == {0, 1}
    assert_own_patches(out, table, (200, 240), decayed=merge == "soft")
    # component boxes never reach outside the image: every frame is its box
    assert (out["mask_boxes"] == out["boxes"].numpy()).all()


def test_clipped_boxes_keep_the_unclipped_frame_of_their_patch() -> None:
    # the model sees the whole canvas; its boxes reach 6 px outside the image
    class Outside(torch.nn.Module):
        def forward(self, images):
            patch = torch.linspace(0, 1, 28 * 28).reshape(1, 28, 28)
            return [
                {
                    "boxes": torch.tensor([[-6.0, 10.0, 22.0, 38.0]]),
                    "scores": torch.tensor([0.9]),
                    "labels": torch.tensor([1]),
                    "mask_patches": patch,
                }
                for _ in images
            ]

    engine = MultiScaleInference(Outside(), scales=[1.0], valid_ranges=[[-1, -1]])
    (out,) = engine([np.zeros((50, 40, 3), np.uint8)])
    assert out["boxes"].tolist() == [[0.0, 10.0, 22.0, 38.0]]
    assert out["mask_boxes"].tolist() == [[-6.0, 10.0, 22.0, 38.0]]
    local, (x0, y0) = paste_patch(out["mask_patches"][0], (-6, 10, 22, 38), (50, 40))
    full = np.zeros((50, 40), np.uint8)
    full[y0 : y0 + local.shape[0], x0 : x0 + local.shape[1]] = local
    np.testing.assert_array_equal(mask_util.decode(out["masks"][0]), full)
    assert full[:, :6].any()  # the right part of the ramp (>= 0.5) lies inside the image


def test_an_object_cut_by_a_tile_seam_gets_the_whole_tiles_mask() -> None:
    # 128 x 128 at 1.0x in 64 px tiles overlapping by 40 (x starts 0, 24, 48, 64): a 28 px
    # disc at x 56..84 is cut by the tiles 0..64 and 64..128, whole in 24..88 and 48..112
    image = np.zeros((128, 128, 3), np.uint8)
    yy, xx = np.mgrid[:28, :28]
    disc = ((xx + 0.5 - 14) ** 2 + (yy + 0.5 - 14) ** 2) <= 14**2  # touches all 4 sides
    truth = np.zeros((128, 128), np.uint8)
    truth[10:38, 56:84] = disc
    image[..., 1] = truth * 255
    model = MaskFakeDetector(exact=True)
    engine = MultiScaleInference(
        model,
        scales=[1.0],
        valid_ranges=[[-1, -1]],
        merge="nms",
        max_pixels=64 * 64,
        tile_size=64,
        tile_overlap=40,
        tile_margin=4.0,
    )
    (out,) = engine([image])
    assert out["inputs_per_scale"] == [16]
    assert out["boxes"].tolist() == [[56.0, 10.0, 84.0, 38.0]]
    got = mask_util.decode(out["masks"][0])
    np.testing.assert_array_equal(got[:, 60:68], truth[:, 60:68])  # along the seam x = 64
    np.testing.assert_array_equal(got, truth)
    # without the inner-edge cut, the cut halves survive the tile de-duplication
    engine.tile_margin = 0.0
    (cut,) = engine([image])
    assert len(cut["boxes"]) > 1


def test_mapping_to_image_px_equals_pasting_in_input_px_then_resizing() -> None:
    # factor 1/3: image pixel 3j + 1 has its centre on input pixel j's centre
    yy, xx = np.mgrid[:28, :28] / 27.0
    bump = np.exp(-((xx - 0.4) ** 2 + (yy - 0.6) ** 2) / 0.08)  # a smooth blob
    noise = np.random.default_rng(3).random((28, 28)) * 0.05
    patch = (bump + noise).astype(np.float32)
    box_in = [3.5, 6.0, 21.0, 27.5]

    class Fixed(torch.nn.Module):
        def forward(self, images):
            assert images[0].shape[1:] == (30, 30)
            return [
                {
                    "boxes": torch.tensor([box_in]),
                    "scores": torch.tensor([0.9]),
                    "labels": torch.tensor([1]),
                    "mask_patches": torch.from_numpy(patch[None]),
                }
            ]

    engine = MultiScaleInference(Fixed(), scales=[1 / 3], valid_ranges=[[-1, -1]])
    (out,) = engine([np.zeros((90, 90, 3), np.uint8)])
    assert out["mask_boxes"][0].tolist() == pytest.approx([10.5, 18.0, 63.0, 82.5])
    image_mask = mask_util.decode(out["masks"][0])
    local, (x0, y0) = paste_patch(patch, box_in, (30, 30))
    input_mask = np.zeros((30, 30), np.uint8)
    input_mask[y0 : y0 + local.shape[0], x0 : x0 + local.shape[1]] = local
    np.testing.assert_array_equal(image_mask[1::3, 1::3], input_mask)
    # and nearly everywhere else: nearest resizing of the input-px mask
    resized = np.repeat(np.repeat(input_mask, 3, 0), 3, 1)
    agree = (resized == image_mask).mean()
    assert agree > 0.97 and input_mask.sum() > 50


def test_box_only_models_give_no_mask_keys_and_bad_patches_are_named() -> None:
    class Boxes(torch.nn.Module):
        def __init__(self, patches=None):
            super().__init__()
            self.patches = patches

        def forward(self, images):
            out = {
                "boxes": torch.tensor([[1.0, 1.0, 9.0, 9.0]]),
                "scores": torch.tensor([0.9]),
                "labels": torch.tensor([1]),
            }
            if self.patches is not None:
                out["mask_patches"] = self.patches
            return [out for _ in images]

    image = np.zeros((20, 20, 3), np.uint8)
    (out,) = MultiScaleInference(Boxes(), [1.0], [[-1, -1]])([image])
    assert not {"mask_patches", "mask_boxes", "masks"} & set(out)
    for bad in (torch.zeros(2, 28, 28), torch.zeros(1, 28, 14), torch.zeros(1, 28)):
        with pytest.raises(ValueError, match="mask_patches must be"):
            MultiScaleInference(Boxes(bad), [1.0], [[-1, -1]])([image])


def test_images_without_detections_get_empty_mask_outputs() -> None:
    model = MaskFakeDetector()
    engine = MultiScaleInference(model, [1.0, 2.0], [[-1, -1], [-1, -1]])
    empty, scene = engine([np.zeros((40, 30, 3), np.uint8), _scene()])
    assert empty["mask_patches"].shape == (0, 28, 28) and empty["mask_boxes"].shape == (0, 4)
    assert empty["masks"] == []
    assert len(scene["masks"]) == len(scene["boxes"]) > 0
