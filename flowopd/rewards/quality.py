"""``quality``: a no-reference image-quality score (a DeQA stand-in), high for clean renders.

Score in [0, 1] = product of four factors, each 1 for a clean render of the world:

- noise: ``exp(-sigma / NOISE_SCALE)``, sigma a robust (median absolute deviation) estimate of the
  pixel noise from the residual of a 3x3 median filter, over pixels away from edges;
- blur: steepness s of the strongest edges (Sobel gradient over the local 5x5 range: 1 for a one-pixel
  step, about 0.65 after a Gaussian blur of radius 1); ``clip((s - BLUR_SOFT) / (BLUR_SHARP - BLUR_SOFT), 0, 1)``;
- off-palette: fraction of strongly covered pixels farther than ``OFF_PALETTE_DIST`` from every segment
  between the background and a palette colour or the ink (anti-aliasing mixes lie on those segments);
  ``1 - min(1, 4 * fraction)``;
- specks: small foreground components (under the detector's minimum area): ``exp(-count / 3)``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..world.detector import MIN_AREA, background_color, components
from ..world.scene import IMAGE_SIZE, PALETTE, TEXT_COLOR
from .images import as_uint8_list

NOISE_SCALE = 6.0
BLUR_SHARP, BLUR_SOFT = 0.9, 0.6
OFF_PALETTE_DIST = 70.0
_REFERENCE = np.array([*PALETTE.values(), TEXT_COLOR], dtype=np.float32)


def _noise_factor(gray: np.ndarray, grad: np.ndarray) -> float:
    flat = grad < np.percentile(grad, 60) + 1e-6
    residual = gray - ndimage.median_filter(gray, 3)
    sigma = 1.4826 * float(np.median(np.abs(residual[flat] - np.median(residual[flat]))))
    return float(np.exp(-sigma / NOISE_SCALE))


def noise_factor(image: np.ndarray) -> float:
    """``exp(-sigma / NOISE_SCALE)`` for a uint8 [H, W, 3] image: 1 when clean, near 0 when noisy."""
    gray = image.astype(np.float32).mean(-1)
    return _noise_factor(gray, np.hypot(ndimage.sobel(gray, 0), ndimage.sobel(gray, 1)))


def quality_parts(image: np.ndarray) -> dict[str, float]:
    """The four factors of one uint8 [H, W, 3] image, each in [0, 1]."""
    img = image.astype(np.float32)
    gray = img.mean(-1)
    grad = np.hypot(ndimage.sobel(gray, 0), ndimage.sobel(gray, 1))
    noise = _noise_factor(gray, grad)

    # Sharpness: the steepest edges' gradient over the local 5x5 range; 1 for a one-pixel step.
    local_range = ndimage.maximum_filter(gray, 5) - ndimage.minimum_filter(gray, 5)
    edges = local_range > 40
    if not edges.any():  # a blank image has no edges to judge
        blur = 0.0
    else:
        steepness = float(np.percentile((grad / 4 / local_range.clip(min=1))[edges], 90))
        blur = float(np.clip((steepness - BLUR_SOFT) / (BLUR_SHARP - BLUR_SOFT), 0, 1))

    bg = background_color(image)
    labels, n, cov = components(image)
    core = cov > 0.9
    if core.any():
        # Anti-aliased rims mix a colour with the background: measure the distance to each segment.
        px, seg = img[core][:, None, :] - bg, _REFERENCE[None] - bg  # [P, 1, 3], [1, K, 3]
        t = np.clip((px * seg).sum(-1) / (seg * seg).sum(-1), 0, 1)[..., None]
        dist = np.linalg.norm(px - t * seg, axis=-1).min(1)
        off = float(np.mean(dist > OFF_PALETTE_DIST))
    else:
        off = 0.0
    off_palette = 1 - min(1.0, 4 * off)

    sizes = ndimage.sum_labels(np.ones_like(cov), labels, index=np.arange(1, n + 1)) if n else np.zeros(0)
    specks = int(np.sum(sizes < MIN_AREA * cov.size))
    return {"noise": noise, "blur": blur, "off_palette": off_palette, "specks": float(np.exp(-specks / 3))}


def quality_reward(images, prompts: list[str], metadata: list[dict]) -> list[float]:
    """Quality score per image (prompts are not used).

    >>> from flowopd.world.scene import Scene, SceneObject, render
    >>> clean = render(Scene((SceneObject("circle", "blue", "big", 0.5, 0.5),)))
    >>> quality_reward([clean], [""], [{}])[0] > 0.9
    True
    """
    out = []
    for image in as_uint8_list(images, IMAGE_SIZE):
        parts = quality_parts(image)
        out.append(float(np.prod(list(parts.values()))))
    return out
