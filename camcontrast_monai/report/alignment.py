"""Image/heatmap crop alignment through stage 2's dataset and batched augmentation, checked on pixels, in 2D and 3D.

Every pixel of a position-coded image stores its image's id and its own coordinates (channels 0..n, scaled by a
last "valid" channel that zero padding empties). After the fixed crop and the batched augmentation (its geometry
only: colour and intensity operations would rewrite the code), every valid pixel of an image crop must come from
that crop's region of its own image, and the heatmap crop must be exactly the same region of the same image's
heatmap. A mix-up of crops, images or heatmaps, or an augmentation that reaches outside its crop, shows here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from camcontrast_monai.data import stage2_dataset
from camcontrast_monai.transforms import fixed_crop_names

__all__ = ["check_crop_alignment", "coded_image", "crop_alignment_problems"]


def coded_image(shape: Sequence[int], image_id: int) -> torch.Tensor:
    """``(n + 2, *shape)``: the image's id, each axis's coordinate (in pixels), and a channel of ones."""
    grids = torch.meshgrid(*[torch.arange(size, dtype=torch.float32) for size in shape], indexing="ij")
    return torch.stack([torch.full(tuple(shape), float(image_id)), *grids, torch.ones(tuple(shape))])


def _decoded(crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel of a batch of coded crops: whether it is valid (valid channel above 0.999) and its decoded code."""
    return crops[:, -1] > 0.999, crops[:, :-1] / crops[:, -1:].clamp_min(1e-6)


def _heatmap_region(heatmap: torch.Tensor, scale: Sequence[int]) -> tuple[list[int], list[int]]:
    """The image region (low, high exclusive, per axis) that a coded heatmap crop covers."""
    low = [int(heatmap[1 + axis].min()) * scale[axis] for axis in range(len(scale))]
    high = [(int(heatmap[1 + axis].max()) + 1) * scale[axis] for axis in range(len(scale))]
    return low, high


def crop_alignment_problems(
    samples: Sequence[dict[str, Any]], augmented: torch.Tensor, image_shape: Sequence[int], heatmap_shape: Sequence[int]
) -> list[str]:
    """What is wrong with each coded sample (its ``heatmap``, ``image_id`` and ``crop_index``) and its augmented
    image crop (``augmented[i]``); empty when every crop lines up."""
    names = fixed_crop_names(len(image_shape))
    valid, values = _decoded(augmented)
    scale = [i // h for i, h in zip(image_shape, heatmap_shape, strict=True)]
    problems = []
    for index, sample in enumerate(samples):
        image_id, crop = sample["image_id"], names[sample["crop_index"]]
        heatmap = torch.as_tensor(sample["heatmap"])
        if not torch.all(heatmap[0] == image_id):
            problems.append(f"image {image_id} crop {crop}: its heatmap crop comes from another image's heatmap")
            continue
        low, high = _heatmap_region(heatmap, scale)
        if [h - lo for lo, h in zip(low, high, strict=True)] != [s // 2 for s in image_shape]:
            problems.append(f"image {image_id} crop {crop}: its heatmap crop covers {low}-{high}, not half the image")
        # bilinear blends of valid pixels stay inside the region they blend
        pixels = values[index][:, valid[index]]
        if not torch.allclose(pixels[0], torch.full_like(pixels[0], float(image_id)), atol=1e-3):
            problems.append(f"image {image_id} crop {crop}: the augmented image crop holds pixels of another image")
            continue
        for axis in range(len(image_shape)):
            if pixels[1 + axis].min() < low[axis] - 1e-3 or pixels[1 + axis].max() > high[axis] - 1 + 1e-3:
                problems.append(
                    f"image {image_id} crop {crop}: augmented pixels reach outside the heatmap crop's region on axis {axis}"
                )
    return problems


def check_crop_alignment(
    augmentation: Callable[[torch.Tensor, int], torch.Tensor] | None,
    image_shape: Sequence[int],
    heatmap_shape: Sequence[int],
    n_images: int = 3,
    draw: int = 3,
) -> dict[str, Any]:
    """Coded images through :func:`~camcontrast_monai.data.stage2_dataset` (fixed crops) and ``augmentation``
    (geometry only; None: no batched augmentation), checked pixel by pixel.

    Returns the number of crops, the fraction of augmented pixels that came from the image rather than
    padding, and the problems found (empty when every crop lines up with its heatmap crop).
    """
    data = [
        {"image": coded_image(image_shape, k), "heatmap": coded_image(heatmap_shape, k)[:-1], "image_id": k}
        for k in range(n_images)
    ]
    dataset = stage2_dataset(data, lambda entry: entry, spatial_dims=len(image_shape), num_workers=0, progress=False)
    samples = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([torch.as_tensor(sample["image"]) for sample in samples])
    augmented = images if augmentation is None else augmentation(images, draw)
    valid, _ = _decoded(augmented)
    image_fraction = float(valid.float().mean())
    problems = crop_alignment_problems(samples, augmented, image_shape, heatmap_shape)
    if image_fraction < 0.5:
        problems.insert(0, f"only {image_fraction:.0%} of the augmented pixels come from the image; the rest is padding")
    return {"crops": len(samples), "image_pixel_fraction": image_fraction, "problems": problems}
