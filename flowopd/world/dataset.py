"""The tiny world's renders of one task as an image set in the folder convention LoRA-training tools use.

``write_dataset("text", 256, "data/text")`` writes ``00000.png`` + ``00000.txt`` (the caption, one line), ...,
and a ``metadata.jsonl`` of ``{"file_name": "00000.png", "text": caption}`` lines listing the same pairs
(:func:`flowopd.datasets.load_image_set` reads either; it prefers ``metadata.jsonl`` when both exist). The
captions are prompts of the task's *train* split (never a test prompt), the images clean renders of scenes
that satisfy them exactly: what a perfect generator would draw, which the task's reward scores highly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from .prompts import PROMPT_SETS, scene_for
from .scene import IMAGE_SIZE, render
from .splits import load_prompts

METADATA_FILE = "metadata.jsonl"


def write_dataset(task: str, n: int, out: str | Path, seed: int = 0, size: int = IMAGE_SIZE) -> Path:
    """Write ``n`` renders of ``task``'s train prompts with their captions to ``out``; returns the folder.

    ``task`` is a task or the ``mixed`` prompt set (a word and shapes in one scene, scored by both rewards).

    Prompts are drawn from the train split without repeats while it lasts (then cycled in a new order), and
    each scene's layout from ``seed``; the same arguments write the same files.

    Raises:
        ValueError: an unknown task, ``n`` < 1, or ``out`` already holds images (pick an empty folder).

    Example:
        >>> import tempfile
        >>> folder = write_dataset("text", 2, tempfile.mkdtemp() + "/text")
        >>> sorted(p.name for p in folder.iterdir())
        ['00000.png', '00000.txt', '00001.png', '00001.txt', 'metadata.jsonl']
    """
    if task not in PROMPT_SETS:
        raise ValueError(f"unknown task {task!r}: use one of {', '.join(PROMPT_SETS)}")
    if n < 1:
        raise ValueError(f"--n {n} is invalid: write at least one image")
    folder = Path(out)
    if folder.is_dir() and any(p.suffix.lower() in (".png", ".jpg", ".jpeg") for p in folder.iterdir()):
        raise ValueError(f"{folder} already holds images: write the image set to an empty or new folder")
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    train = load_prompts(task, "train")
    records: list[dict] = []
    while len(records) < n:
        records += rng.sample(train, min(len(train), n - len(records)))
    lines = []
    for i, record in enumerate(records):
        name = f"{i:05d}"
        render(scene_for(record, rng), size).save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_text(record["prompt"] + "\n")
        lines.append(json.dumps({"file_name": f"{name}.png", "text": record["prompt"]}) + "\n")
    (folder / METADATA_FILE).write_text("".join(lines))
    return folder
