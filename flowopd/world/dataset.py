"""The tiny world's prompts as an image set in the folder convention LoRA-training tools use: clean renders, or a
model's own samples (a regularization set).

``write_dataset("text", 256, "data/text")`` writes ``00000.png`` + ``00000.txt`` (the caption, one line), ...,
and a ``metadata.jsonl`` of ``{"file_name": "00000.png", "text": caption}`` lines listing the same pairs
(:func:`flowopd.datasets.load_image_set` reads either; it prefers ``metadata.jsonl`` when both exist). The
captions are prompts of the task's *train* split (never a test prompt), the images clean renders of scenes
that satisfy them exactly: what a perfect generator would draw, which the task's reward scores highly.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

from .prompts import PROMPT_SETS, scene_for
from .scene import IMAGE_SIZE, render
from .splits import load_prompts

METADATA_FILE = "metadata.jsonl"


def _records(tasks: list[str], n: int, rng: random.Random) -> list[dict]:
    """``n`` train prompts, the tasks' in turn: each task's share drawn from its split without repeats while it
    lasts (then cycled in a new order)."""
    drawn = []
    for k, task in enumerate(tasks):
        share, train, records = len(range(k, n, len(tasks))), load_prompts(task, "train"), []
        while len(records) < share:
            records += rng.sample(train, min(len(train), share - len(records)))
        drawn.append(records)
    return [drawn[i % len(tasks)][i // len(tasks)] for i in range(n)]


def _samples(model, prompts: list[str], seed: int, steps: int, guidance: float, chunk: int = 64):
    """The model's ODE samples of ``prompts`` (image i from seed ``seed + i``) as PIL images, a chunk at a time,
    so a large set of large images is never held at once."""
    from ..models.base import to_pil
    from ..sampling import generate

    for start in range(0, len(prompts), chunk):
        part = prompts[start:start + chunk]
        seeds = [seed + start + i for i in range(len(part))]
        yield from to_pil(generate(model, part, seeds=seeds, num_steps=steps, guidance=guidance))


def write_dataset(task: str, n: int, out: str | Path, seed: int = 0, size: int = IMAGE_SIZE, *, model=None,
                  steps: int = 20, guidance: float = 3.0) -> Path:
    """Write ``n`` images of ``task``'s train prompts with their captions to ``out``; returns the folder.

    ``task`` is a task, the ``mixed`` prompt set (a word and shapes in one scene, scored by both rewards), or
    several joined by commas (their prompts in turn). With ``model`` None the images are clean renders of
    scenes that satisfy the prompts (each layout from ``seed``, ``size`` pixels a side); with a model, its own
    ODE samples at its own size (image i from seed ``seed + i``, ``steps`` steps at CFG ``guidance``): the
    regularization set of an SFT run's prior
    preservation (``SFTConfig.reg_data``). The same arguments write the same files.

    Raises:
        ValueError: an unknown task, ``n`` < 1, or ``out`` already holds images (pick an empty folder).

    Example:
        >>> import tempfile
        >>> folder = write_dataset("text", 2, tempfile.mkdtemp() + "/text")
        >>> sorted(p.name for p in folder.iterdir())
        ['00000.png', '00000.txt', '00001.png', '00001.txt', 'metadata.jsonl']
    """
    tasks = [t.strip() for t in task.split(",")]
    unknown = [t for t in tasks if t not in PROMPT_SETS]
    if unknown:
        raise ValueError(f"unknown task {unknown[0]!r}: use one of {', '.join(PROMPT_SETS)} (several joined by "
                         "commas)")
    if n < 1:
        raise ValueError(f"--n {n} is invalid: write at least one image")
    folder = Path(out)
    if folder.is_dir() and any(p.suffix.lower() in (".png", ".jpg", ".jpeg") for p in folder.iterdir()):
        raise ValueError(f"{folder} already holds images: write the image set to an empty or new folder")
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    records = _records(tasks, n, rng)
    if model is None:
        images = (render(scene_for(record, rng), size) for record in records)
    else:
        images = _samples(model, [r["prompt"] for r in records], seed, steps, guidance)
    lines = []
    for i, (record, image) in enumerate(zip(records, images)):
        name = f"{i:05d}"
        image.save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_text(record["prompt"] + "\n")
        lines.append(json.dumps({"file_name": f"{name}.png", "text": record["prompt"]}) + "\n")
    (folder / METADATA_FILE).write_text("".join(lines))
    return folder


def ensure_image_set(folder: str | Path, task: str, images: int, accelerator=None, model=None) -> None:
    """Write the world's renders of ``task`` to ``folder`` (an sft teacher's or a joint row's image set) unless
    it is there; the same files for every seed, written by the main process (all of them wait) through a
    temporary folder, so a killed write never leaves half a set. With ``model``: the base's own samples
    (no adapter), a regularization set."""
    from ..adapters import use_adapter

    folder, main = Path(folder), accelerator is None or accelerator.is_main_process
    if not (folder / METADATA_FILE).is_file() and main:
        tmp = folder.with_name(f".{folder.name}-{os.getpid()}")
        if model is None:
            write_dataset(task, images, tmp)
        else:
            with use_adapter(model, None):
                write_dataset(task, images, tmp, model=model)
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():  # another process wrote it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    if accelerator is not None:
        accelerator.wait_for_everyone()
