"""Conversions shared by the rewards: any image batch -> uint8 arrays of a given side."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def as_uint8_list(images, side: int | None = None) -> list[np.ndarray]:
    """PIL images, uint8 [N, H, W, 3] arrays or float [N, 3, H, W] tensors in [0, 1] -> list of [S, S, 3] uint8.

    ``side`` resizes (box filter when shrinking, bicubic when enlarging) so rewards accept any size.
    """
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"image tensor must be [N, 3, H, W] in [0, 1], got shape {tuple(images.shape)}")
        arr = (images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round()
        images = list(arr.astype(np.uint8))
    out = []
    for im in images:
        pil = im.convert("RGB") if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im, np.uint8))
        if side is not None and pil.size != (side, side):
            resample = Image.Resampling.BOX if pil.size[0] > side else Image.Resampling.BICUBIC
            pil = pil.resize((side, side), resample)
        out.append(np.asarray(pil))
    return out
