"""Scenes of the tiny world and their renderer.

A scene is a light background with either coloured shapes or a short word. Renders are drawn at
``SUPERSAMPLE`` times the target size and box-filtered down, so edges are anti-aliased the same way
at every resolution; the result is deterministic for a given scene and size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_SIZE = 32
SUPERSAMPLE = 4

# Named colours, far apart in RGB so that the nearest-palette rule is exact on clean renders.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 195, 20),
    "purple": (140, 55, 185),
    "orange": (240, 125, 25),
}
SHAPES = ("circle", "square", "triangle")
# Object sides as a fraction of the image side.
SIZES = {"small": 0.22, "big": 0.34}
BACKGROUNDS = ((245, 245, 245), (238, 236, 228), (232, 238, 242))
TEXT_COLOR = (25, 25, 30)
# Letters that OCR reads reliably at 32 px and that are not confused with digits (no C, O, I, S, Z, B, M, W).
ALPHABET = "AEFHKLNPRTUXY"
MAX_WORD_LEN = 4
# Each letter gets a fixed slot; drawing letters apart keeps them from merging (OCR reads them).
LETTER_SLOT = 0.23
LETTER_HEIGHT = 0.32


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str
    cx: float  # centre, as a fraction of the image width
    cy: float  # centre, as a fraction of the image height (0 = top)

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape {self.shape!r} is not one of {SHAPES}")
        if self.color not in PALETTE:
            raise ValueError(f"color {self.color!r} is not one of {tuple(PALETTE)}")
        if self.size not in SIZES:
            raise ValueError(f"size {self.size!r} is not one of {tuple(SIZES)}")


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...] = ()
    text: str | None = None
    background: tuple[int, int, int] = BACKGROUNDS[0]
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int) -> None:
    half = SIZES[obj.size] * side / 2
    x, y = obj.cx * side, obj.cy * side
    box = (x - half, y - half, x + half, y + half)
    fill = PALETTE[obj.color]
    if obj.shape == "circle":
        draw.ellipse(box, fill=fill)
    elif obj.shape == "square":
        draw.rectangle(box, fill=fill)
    else:  # upward triangle inscribed in the box
        draw.polygon([(x, y - half), (x + half, y + half), (x - half, y + half)], fill=fill)


_FONTS: dict[int, ImageFont.FreeTypeFont] = {}


def _font(px: int) -> ImageFont.FreeTypeFont:
    if px not in _FONTS:
        _FONTS[px] = ImageFont.load_default(px)
    return _FONTS[px]


def _draw_text(draw: ImageDraw.ImageDraw, text: str, side: int) -> None:
    slot = LETTER_SLOT * side
    font = _font(max(4, round(LETTER_HEIGHT * side * 1.25)))
    left = side / 2 - slot * len(text) / 2
    for i, letter in enumerate(text):
        x0, y0, x1, y1 = font.getbbox(letter)
        x = left + slot * (i + 0.5) - (x0 + x1) / 2
        y = side / 2 - (y0 + y1) / 2
        draw.text((x, y), letter, fill=TEXT_COLOR, font=font)


def render(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw ``scene`` as an RGB image of ``size`` x ``size`` pixels."""
    if size < 16:
        raise ValueError(f"image size {size} is too small: use 16 pixels or more")
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), scene.background)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_object(draw, obj, big)
    if scene.text:
        _draw_text(draw, scene.text, big)
    return image.resize((size, size), Image.Resampling.BOX)


def render_array(scenes: list[Scene], size: int = IMAGE_SIZE) -> np.ndarray:
    """Render a batch as a uint8 array [N, size, size, 3]."""
    return np.stack([np.asarray(render(s, size)) for s in scenes])
