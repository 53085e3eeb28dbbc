"""The analytic composition detector of the tiny world (GenEval's detector, for rendered shapes).

1. Background = median colour of the border pixels.
2. Coverage of each pixel = its colour distance to the background over ``FULL_CONTRAST`` (clipped to
   [0, 1]); pixels with coverage > ``FOREGROUND`` form 4-connected components.
3. Components smaller than ``MIN_AREA`` of the image are specks and are ignored. The colour of a
   component is the palette colour nearest to the mean of its most covered pixels; a mean
   farther than ``MAX_COLOR_DIST`` from every palette colour (e.g. dark text) is not an object.
4. Shape by fill ratio ``area / (soft width * soft height)`` (soft extents sum the largest coverage of
   each column and row, so sub-pixel edges count): square ~1.0, circle ~pi/4, triangle ~0.5.
5. Position by the centre of the half-coverage bounding box; "A left of B" holds when the x offset dominates the y
   offset and exceeds ``RELATION_MARGIN`` of the side (the rule the scene generator also uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .prompts import relation_holds as _holds
from .scene import PALETTE

FULL_CONTRAST = 90.0
FOREGROUND = 0.35
MIN_AREA = 0.008  # of the image area: 8 px at 32 x 32
MAX_COLOR_DIST = 80.0
SQUARE_FILL, TRIANGLE_FILL = 0.9, 0.68
RELATION_MARGIN = 0.05
_PALETTE_RGB = np.array(list(PALETTE.values()), dtype=np.float32)
_PALETTE_NAMES = list(PALETTE)


@dataclass(frozen=True)
class Detection:
    shape: str
    color: str
    cx: float  # centroid as a fraction of the width
    cy: float  # centroid as a fraction of the height
    area: float  # coverage-weighted pixels
    fill: float


def background_color(image: np.ndarray) -> np.ndarray:
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]).astype(np.float32)
    return np.median(border, axis=0)


def coverage(image: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel coverage in [0, 1] of anything that is not background, for a uint8 [H, W, 3] image."""
    bg = background_color(image) if background is None else background
    return np.clip(np.linalg.norm(image.astype(np.float32) - bg, axis=-1) / FULL_CONTRAST, 0, 1)


def components(image: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """(labels [H, W], count, coverage [H, W]) of the foreground's 4-connected components."""
    cov = coverage(image)
    labels, n = ndimage.label(cov > FOREGROUND)
    return labels, n, cov


def detect(image: np.ndarray) -> list[Detection]:
    """Objects in a uint8 [H, W, 3] render, largest first."""
    h, w = image.shape[:2]
    labels, n, cov = components(image)
    found = []
    for index, sl in enumerate(ndimage.find_objects(labels), 1):
        if sl is None:
            continue
        in_comp = labels[sl] == index
        # The component's own pixels plus its anti-aliased rim (one unlabelled pixel around it).
        ys0, xs0 = sl[0].start, sl[1].start
        y0, y1 = max(0, ys0 - 1), min(h, sl[0].stop + 1)
        x0, x1 = max(0, xs0 - 1), min(w, sl[1].stop + 1)
        mask = np.zeros((y1 - y0, x1 - x0), bool)
        mask[ys0 - y0:ys0 - y0 + in_comp.shape[0], xs0 - x0:xs0 - x0 + in_comp.shape[1]] = in_comp
        mask = ndimage.binary_dilation(mask) & (labels[y0:y1, x0:x1] == 0) | mask
        c = np.where(mask, cov[y0:y1, x0:x1], 0.0)
        area = float(c.sum())
        if area < MIN_AREA * h * w:
            continue
        # Colour from the most covered pixels: anti-aliased rims mix in the background.
        core = mask & (c >= 0.9 * c.max())
        pixels = image[y0:y1, x0:x1][core].astype(np.float32)
        dist = np.linalg.norm(_PALETTE_RGB - pixels.mean(0), axis=1)
        if dist.min() > MAX_COLOR_DIST:
            continue
        soft_w, soft_h = c.max(0).sum(), c.max(1).sum()
        fill = area / max(soft_w * soft_h, 1e-6)
        shape = "square" if fill > SQUARE_FILL else "circle" if fill > TRIANGLE_FILL else "triangle"
        # Centre of the half-coverage box (the scene places objects by box centre, not centroid).
        rows, cols = np.nonzero(c > 0.5)
        cx = (x0 + (cols.min() + cols.max() + 1) / 2) / w if len(cols) else (x0 + x1) / 2 / w
        cy = (y0 + (rows.min() + rows.max() + 1) / 2) / h if len(rows) else (y0 + y1) / 2 / h
        found.append(Detection(shape, _PALETTE_NAMES[int(dist.argmin())], float(cx), float(cy), area, float(fill)))
    return sorted(found, key=lambda d: -d.area)


def relation_holds(relation: str, a: Detection, b: Detection) -> bool:
    return _holds(relation, (a.cx, a.cy), (b.cx, b.cy), margin=RELATION_MARGIN)


def judge(detections: list[Detection], record: dict) -> tuple[bool, float]:
    """(strict GenEval correctness, Flow-GRPO-style partial credit in [0, 1]) of one image for ``record``."""
    correct, credits = True, []
    by_class = {}
    for clause in record.get("include", []):
        of_class = [d for d in detections if d.shape == clause["class"]]
        by_class.setdefault(clause["class"], of_class)
        want = clause["count"]
        parts = [max(0.0, 1 - abs(len(of_class) - want) / want)]
        matching = of_class
        if clause.get("color"):
            matching = [d for d in of_class if d.color == clause["color"]]
            parts.append(len(matching) / len(of_class) if of_class else 0.0)
        if len(matching) < want:
            correct = False
        if clause.get("position"):
            relation, index = clause["position"]
            anchors = by_class.get(record["include"][index]["class"], [])
            holds = bool(of_class and anchors and relation_holds(relation, of_class[0], anchors[0]))
            parts.append(float(holds))
            correct &= holds
        credits.append(sum(parts) / len(parts))
    for clause in record.get("exclude", []):
        if sum(d.shape == clause["class"] for d in detections) >= clause["count"]:
            correct = False
    return correct, (sum(credits) / len(credits) if credits else 0.0)
