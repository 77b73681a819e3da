"""NoResizeTransform: normalizes and pads to /32, never resizes images or boxes."""

from __future__ import annotations

import torch

from sniper.modeling.transform import NoResizeTransform

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]


def test_no_resize_pads_to_multiple_of_32_and_keeps_boxes() -> None:
    transform = NoResizeTransform(MEAN, STD, "RGB", size_divisible=32)
    images = [torch.full((3, 100, 130), 200, dtype=torch.uint8), torch.rand(3, 64, 40) * 255]
    boxes = torch.tensor([[3.5, 4.0, 99.0, 60.25]])
    targets = [
        {"boxes": boxes, "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    image_list, out_targets = transform(images, targets)
    assert image_list.tensors.shape == (2, 3, 128, 160)
    assert image_list.image_sizes == [(100, 130), (64, 40)]
    assert out_targets is not None and torch.equal(out_targets[0]["boxes"], boxes)
    assert out_targets[0] is not targets[0]  # shallow copy, caller's dicts untouched
    expected = (200.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(image_list.tensors[0, :, 50, 70], expected)
    assert torch.all(image_list.tensors[0, :, 100:, :] == 0)
    assert torch.all(image_list.tensors[0, :, :, 130:] == 0)
    assert torch.all(image_list.tensors[1, :, 64:, :] == 0)


def test_exact_multiple_is_not_padded_and_postprocess_is_identity() -> None:
    transform = NoResizeTransform(MEAN, STD)
    image_list, targets = transform([torch.zeros(3, 512, 512)])
    assert targets is None
    assert image_list.tensors.shape == (1, 3, 512, 512)
    result = [{"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]])}]
    out = transform.postprocess(result, [(512, 512)], [(512, 512)])
    assert torch.equal(out[0]["boxes"], result[0]["boxes"])


def test_bgr_input_is_flipped_to_rgb() -> None:
    rgb = NoResizeTransform(MEAN, STD, "RGB")
    bgr = NoResizeTransform(MEAN, STD, "BGR")
    image = torch.rand(3, 32, 32) * 255
    a, _ = rgb([image])
    b, _ = bgr([image.flip(0)])
    assert torch.allclose(a.tensors, b.tensors)


def test_is_a_drop_in_transform_of_torchvision_detectors() -> None:
    """torchvision's GeneralizedRCNN.forward calls `transform.postprocess`: it is not dead."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    torch.manual_seed(0)
    backbone = torch.nn.Conv2d(3, 8, 3, stride=8, padding=1)
    backbone.out_channels = 8
    model = FasterRCNN(
        backbone,
        num_classes=2,
        min_size=64,
        max_size=64,
        rpn_anchor_generator=AnchorGenerator(((16, 32),), ((1.0,),)),
    )
    model.transform = NoResizeTransform(MEAN, STD)
    model.roi_heads.score_thresh = 0.0
    calls = []
    postprocess = model.transform.postprocess
    model.transform.postprocess = lambda *args: calls.append(args[1:]) or postprocess(*args)
    with torch.no_grad():
        out = model.eval()([torch.rand(3, 100, 70) * 255])
    assert calls == [([(100, 70)], [(100, 70)])]
    boxes = out[0]["boxes"]
    assert len(boxes) > 0 and float(boxes[:, 2].max()) <= 70 and float(boxes[:, 3].max()) <= 100
