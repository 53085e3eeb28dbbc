"""``prefer``: a PickScore stand-in built from simple, documented proxies of human taste.

Score in [0, 1] = (0.3 saturation + 0.2 contrast + 0.3 prominence + 0.2 centring) x noise factor, where

- saturation: mean HSV saturation of the subject's pixels (vivid colour is liked);
- contrast: luminance difference between subject and background, over 128;
- prominence: subject area over 20 % of the image, capped at 1 (a big subject is liked);
- centring: 1 - distance of the subject's centroid from the image centre, over half the side;
- the noise factor is ``quality``'s (1 for clean images): pixel noise is not a vivid subject.

Like PickScore in the paper, it pulls against the other tasks: it favours one big centred vivid
object, while ``compose`` asks for counts and positions and ``text`` for dark letters.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..world.detector import MIN_AREA, background_color, components
from ..world.scene import IMAGE_SIZE
from .images import as_uint8_list
from .quality import noise_factor

WEIGHTS = {"saturation": 0.3, "contrast": 0.2, "prominence": 0.3, "centring": 0.2}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def prefer_parts(image: np.ndarray) -> dict[str, float]:
    """The four proxies of one uint8 [H, W, 3] image, each in [0, 1]."""
    bg = background_color(image)
    labels, n, cov = components(image)
    # The subject is the foreground's sizeable components: pixel noise and specks earn nothing.
    sizes = ndimage.sum_labels(np.ones_like(cov), labels, index=np.arange(1, n + 1)) if n else np.zeros(0)
    keep = np.flatnonzero(sizes >= MIN_AREA * cov.size) + 1
    subject = np.isin(labels, keep) & (cov > 0.5)
    cov = np.where(np.isin(labels, keep), cov, 0.0)
    if not subject.any():
        return dict.fromkeys(WEIGHTS, 0.0)
    pixels = image[subject].astype(np.float32)
    mx, mn = pixels.max(1), pixels.min(1)
    saturation = float(np.mean((mx - mn) / np.maximum(mx, 1)))
    contrast = float(min(1.0, abs(pixels.mean(0) @ _LUMA - bg @ _LUMA) / 128))
    h, w = subject.shape
    prominence = float(min(1.0, cov.sum() / (0.2 * h * w)))
    ys, xs = np.mgrid[0:h, 0:w]
    cy, cx = (cov * (ys + 0.5)).sum() / cov.sum() / h, (cov * (xs + 0.5)).sum() / cov.sum() / w
    centring = float(max(0.0, 1 - np.hypot(cx - 0.5, cy - 0.5) / 0.5))
    return {"saturation": saturation, "contrast": contrast, "prominence": prominence, "centring": centring}


def prefer_reward(images, prompts: list[str], metadata: list[dict]) -> list[float]:
    """Preference score per image (prompts are not used: a generic taste model).

    >>> from flowopd.world.scene import Scene, SceneObject, render
    >>> big = render(Scene((SceneObject("square", "red", "big", 0.5, 0.5),)))
    >>> small = render(Scene((SceneObject("square", "red", "small", 0.2, 0.2),)))
    >>> a, b = prefer_reward([big, small], ["", ""], [{}, {}])
    >>> a > b
    True
    """
    out = []
    for image in as_uint8_list(images, IMAGE_SIZE):
        parts = prefer_parts(image)
        out.append(sum(WEIGHTS[k] * parts[k] for k in WEIGHTS) * noise_factor(image))
    return out
