"""Input transform that normalizes and pads, but never resizes.

SNIPER chips arrive at their training size and test images arrive already rescaled to their
test scale, so unlike torchvision's `GeneralizedRCNNTransform` nothing here changes the
geometry: boxes in targets and in outputs stay in the pixels of the input tensors.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

__all__ = ["NoResizeTransform"]


class NoResizeTransform(nn.Module):
    """Channel reorder + mean/std normalization + zero padding to a multiple of `size_divisible`.

    Args:
        pixel_mean: per-channel mean in RGB order, 0-255 scale.
        pixel_std: per-channel std in RGB order, 0-255 scale.
        input_format: "RGB" or "BGR", the channel order of the images given to `forward`
            (BGR inputs are flipped to RGB so pretrained RGB weights see RGB).
        size_divisible: the padded batch height/width are multiples of this (32 for FPN P5).
    """

    def __init__(
        self,
        pixel_mean: list[float],
        pixel_std: list[float],
        input_format: str = "RGB",
        size_divisible: int = 32,
    ) -> None:
        super().__init__()
        if input_format not in ("RGB", "BGR"):
            raise ValueError(f'input_format must be "RGB" or "BGR", got {input_format!r}')
        self.input_format = input_format
        self.size_divisible = int(size_divisible)
        mean = torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    def normalize(self, image: Tensor) -> Tensor:
        """(C, H, W) uint8 or float 0-255 in `input_format` order -> float32 normalized RGB."""
        if image.dim() != 3:
            raise ValueError(f"expected a (C, H, W) image, got shape {tuple(image.shape)}")
        image = image.to(dtype=torch.float32)
        if self.input_format == "BGR":
            image = image.flip(0)
        return (image - self.pixel_mean) / self.pixel_std

    def batch_images(self, images: list[Tensor]) -> Tensor:
        """Stack (C, H_i, W_i) images into (N, C, H, W), zero padded at the right/bottom,
        with H and W the maxima rounded up to a multiple of `size_divisible`."""
        div = self.size_divisible
        height = max(int(img.shape[-2]) for img in images)
        width = max(int(img.shape[-1]) for img in images)
        height = int(math.ceil(height / div) * div)
        width = int(math.ceil(width / div) * div)
        batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
        for i, img in enumerate(images):
            batch[i, :, : img.shape[-2], : img.shape[-1]].copy_(img)
        return batch

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None]:
        """Normalize and pad `images`; `targets` are shallow-copied, never modified.

        Returns:
            An ImageList whose `image_sizes` are the unpadded (H, W) of each input, and the
            targets (boxes in the same input pixels, since nothing is resized).
        """
        if len(images) == 0:
            raise ValueError("expected at least one image")
        normalized = [self.normalize(img) for img in images]
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in normalized]
        copied = None if targets is None else [dict(t) for t in targets]
        return ImageList(self.batch_images(normalized), sizes), copied

    def postprocess(
        self,
        result: list[dict[str, Tensor]],
        image_shapes: list[tuple[int, int]],
        original_image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Identity: boxes are already in input-image pixels.

        Not dead code: torchvision's `GeneralizedRCNN.forward` calls
        `self.transform.postprocess(detections, image_sizes, original_image_sizes)`, so this
        keeps `NoResizeTransform` a drop-in for `GeneralizedRCNNTransform` in torchvision's
        own detectors. `SniperRCNN` overrides `forward` and never calls it. The two size
        arguments are unused because nothing was resized.
        """
        del image_shapes, original_image_sizes  # part of torchvision's interface, see above
        return result

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(format={self.input_format}, "
            f"mean={self.pixel_mean.flatten().tolist()}, std={self.pixel_std.flatten().tolist()}, "
            f"size_divisible={self.size_divisible}, no resize)"
        )
