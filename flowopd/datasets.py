"""Image sets with captions, in the folder convention of the LoRA-training tools (kohya_ss, fluxgym, diffusers).

A folder holds either

* images (``.png``, ``.jpg``, ``.jpeg``, ``.webp``, ``.bmp``) each with a same-name ``.txt`` caption beside it
  (``cat.png`` + ``cat.txt``; the caption is the file's text, stripped), or
* a ``metadata.jsonl`` of one JSON object per line, ``{"file_name": "cat.png", "text": "a photo of a cat"}``
  (Hugging Face ``imagefolder``, diffusers' LoRA scripts).

When both exist, ``metadata.jsonl`` wins: it is the explicit list, and the ``.txt`` files are ignored.

Sizes: the model generates square images of one side S (32 px for the tiny model). A square image of side S
is taken as it is; a larger square one is downscaled to S with a box filter (as the tiny world's renderer
anti-aliases) and counted in :attr:`ImageSet.downscaled` (``resize="refuse"`` refuses it instead). Any other
size is refused: a non-square image (crop it first: a squeezed or padded image teaches the model the squeeze
or the padding) and a smaller one (upscaling only blurs). Errors name the file and the fix.

This module imports no torch: the trainer turns :attr:`ImageSet.images` into latents.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
METADATA_FILE = "metadata.jsonl"
RESIZE_MODES = ("downscale", "refuse")
__all__ = ["IMAGE_SUFFIXES", "METADATA_FILE", "RESIZE_MODES", "DatasetError", "ImageSet", "load_image_set"]


class DatasetError(ValueError):
    """An image set cannot be read; the message names the file and the fix."""


@dataclass
class ImageSet:
    """An image set read from a folder.

    Attributes:
        images: uint8 [N, S, S, 3] RGB.
        captions: N captions.
        files: N image file names (relative to the folder).
        source: where the captions came from: ``metadata.jsonl`` or ``.txt``.
        downscaled: how many images were larger than S and were downscaled.
    """

    images: np.ndarray
    captions: list[str]
    files: list[str]
    source: str
    downscaled: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)


def _pairs_from_metadata(folder: Path) -> list[tuple[str, str]]:
    path = folder / METADATA_FILE
    pairs = []
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path} line {k} is not JSON ({err.msg}): write one object per line, e.g. "
                               '{"file_name": "cat.png", "text": "a photo of a cat"}') from None
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str) or not row["file_name"].strip():
            raise DatasetError(f'{path} line {k} has no "file_name": write e.g. '
                               '{"file_name": "cat.png", "text": "a photo of a cat"}')
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f'{path} line {k} ({row["file_name"]}) has no "text": add its caption, e.g. '
                               f'{{"file_name": "{row["file_name"]}", "text": "a photo of a cat"}}, or drop the line')
        if not (folder / row["file_name"]).is_file():
            raise DatasetError(f'{path} line {k} names {row["file_name"]}, which is not in {folder}: add the image '
                               "or drop the line")
        pairs.append((row["file_name"], text.strip()))
    if not pairs:
        raise DatasetError(f"{path} lists no images: add one line per image, or delete it to use .txt captions")
    return pairs


def _pairs_from_captions(folder: Path) -> list[tuple[str, str]]:
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}): add images with same-name .txt "
                           "captions or a metadata.jsonl (`flowopd world dataset` writes an example set)")
    pairs = []
    for image in images:
        caption = image.with_suffix(".txt")
        if not caption.is_file():
            raise DatasetError(f"image {image} has no caption: write {caption.name} beside it (its caption as text), "
                               f"list it in a {METADATA_FILE}, or remove the image")
        text = caption.read_text(errors="replace").strip()
        if not text:
            raise DatasetError(f"caption {caption} is empty: write the image's caption in it, or remove the image")
        pairs.append((image.name, text))
    return pairs


def _read_image(path: Path, size: int, resize: str) -> tuple[np.ndarray, bool]:
    """``path`` as uint8 [size, size, 3] and whether it was downscaled."""
    try:
        with Image.open(path) as im:
            im.load()
            image = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"cannot read image {path} ({type(err).__name__}: {err}): replace it with a PNG or JPEG "
                           "file, or remove it and its caption") from None
    w, h = image.size
    if (w, h) == (size, size):
        return np.asarray(image), False
    if w != h:
        raise DatasetError(f"image {path} is {w}x{h}, but the model takes square {size}x{size} images: crop it to a "
                           f"square (its side a multiple of {size} is best), or remove it")
    if w < size:
        raise DatasetError(f"image {path} is {w}x{h}, smaller than the model's {size}x{size}: supply images of at "
                           f"least {size} px (upscaling would only blur them), or remove it")
    if resize == "refuse":
        raise DatasetError(f"image {path} is {w}x{h}, not the model's {size}x{size}: resize it to {size} px, or set "
                           "resize to 'downscale'")
    return np.asarray(image.resize((size, size), Image.Resampling.BOX)), True


def load_image_set(folder: str | Path, size: int, resize: str = "downscale") -> ImageSet:
    """Read the image set in ``folder`` for a model of side ``size`` (see the module docstring).

    Args:
        folder: the image set's folder.
        size: the model's image side S in pixels.
        resize: ``downscale`` (larger square images are box-filtered to S) or ``refuse``.

    Raises:
        DatasetError: no such folder, no images, a missing or empty caption, a bad ``metadata.jsonl`` line, an
            unreadable image or a size the model cannot take.
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize={resize!r} is invalid: use one of {', '.join(RESIZE_MODES)}")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image set folder {root} does not exist: give a folder of images with captions "
                           "(`flowopd world dataset --task text --n 64 --out DIR` writes one)")
    from_metadata = (root / METADATA_FILE).is_file()
    pairs = _pairs_from_metadata(root) if from_metadata else _pairs_from_captions(root)
    arrays, downscaled = [], 0
    for name, _ in pairs:
        array, smaller = _read_image(root / name, size, resize)
        arrays.append(array)
        downscaled += smaller
    notes = []
    if downscaled:
        notes.append(f"{downscaled} of {len(pairs)} images were larger than {size}x{size} and were downscaled")
        log.info("image set %s: %s", root, notes[-1])
    return ImageSet(np.stack(arrays), [c for _, c in pairs], [n for n, _ in pairs],
                    METADATA_FILE if from_metadata else ".txt", downscaled, notes)
