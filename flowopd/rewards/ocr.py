"""``ocr``: Flow-GRPO's OCR reward on real images (its PaddleOCR replaced by rapidocr, whose PP-OCR models ship
in the wheel: nothing is downloaded).

The whole image goes through text detection and recognition; the recognised lines with a confidence above 0
are joined and scored against the prompt's target (``metadata["target"]`` or the first double-quoted text) by
:func:`flowopd.rewards.text.ocr_score`: 1 if the target is contained, else 1 - capped normalised edit distance.
The tiny world's ``text`` reward reads its 32 px renders faster (ink crop, no detector); this one is for
generated photos of any size.
"""

from __future__ import annotations

import threading

import numpy as np

from .images import as_uint8_list
from .text import ocr_score, target_of

# Images are shrunk to this longest side for detection (a 512 px image stays as it is: about 0.5 s on one
# CPU thread; a 1024 px one is not slowed down four times).
DET_SIDE = 512
_engine = None
_lock = threading.Lock()  # the ONNX OCR pipeline is not thread-safe


def _ocr():
    global _engine
    if _engine is None:
        from rapidocr import RapidOCR

        _engine = RapidOCR(params={"Global.use_cls": False, "Global.log_level": "error",
                                   "Det.limit_type": "max", "Det.limit_side_len": DET_SIDE})
    return _engine


def recognise(image: np.ndarray) -> str:
    """The text rapidocr reads in a uint8 [H, W, 3] image: its lines (confidence > 0) joined; '' if none."""
    with _lock:
        out = _ocr()(np.ascontiguousarray(image), use_cls=False)
    if not out.txts:
        return ""
    return "".join(t for t, s in zip(out.txts, out.scores) if s > 0)


def ocr_reward(images, prompts: list[str], metadata: list[dict]) -> list[float]:
    """OCR reward per image of any size; a prompt without a target scores 0 (there is nothing to read).

    >>> from PIL import Image, ImageDraw
    >>> image = Image.new("RGB", (256, 256), "white")
    >>> ImageDraw.Draw(image).text((40, 100), "OPEN", fill="black", font_size=64)
    >>> ocr_reward([image, image], ['a shop sign that says "OPEN"', "a cat"], [{}, {}])
    [1.0, 0.0]
    """
    scores = []
    for image, prompt, meta in zip(as_uint8_list(images), prompts, metadata):
        target = target_of(prompt, meta)
        scores.append(ocr_score(recognise(image), target) if target else 0.0)
    return scores
