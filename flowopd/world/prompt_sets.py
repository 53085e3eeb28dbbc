"""Your own prompt sets in Flow-GRPO's dataset layout, in place of the tiny world's splits for the tasks they name.

A folder per task holds ``train.txt`` / ``test.txt`` (one prompt a line) or ``train_metadata.jsonl`` /
``test_metadata.jsonl`` (one JSON object a line with a ``prompt`` and the task's metadata: GenEval's objects,
OCR's target text), so Flow-GRPO's own OCR, GenEval and PickScore prompt files work as they are. A stage's
config field ``prompt_sets`` ({task: folder}) makes :func:`flowopd.world.splits.load_prompts` return these
records (each with its ``task``) for its run: rollouts, samples and evaluation all read them, and the rewards
receive each record as its metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from .prompts import TASKS, target_of

SPLITS = ("train", "test")
LAYOUT = "train.txt and test.txt (one prompt a line) or train_metadata.jsonl and test_metadata.jsonl"


class PromptSetError(ValueError):
    """A prompt set that cannot be read; the message names ``prompt_sets``, the file and the fix."""


def split_files(folder: Path, split: str) -> tuple[Path, Path]:
    return folder / f"{split}_metadata.jsonl", folder / f"{split}.txt"


def read_prompt_set(folder: str, task: str, split: str) -> tuple[dict, ...]:
    """The records of one split of the set in ``folder`` for ``task`` (metadata.jsonl preferred over .txt), read
    again when a file changes.

    Raises:
        PromptSetError: no folder, neither file, an empty set, a bad JSON line, a line without a prompt, or a
            ``text`` prompt with no target the OCR-style rewards can score.
    """
    stamps = tuple(p.stat().st_mtime_ns if p.is_file() else 0 for p in split_files(Path(folder).expanduser(), split))
    return _read(folder, task, split, stamps)


@lru_cache(maxsize=64)
def _read(folder: str, task: str, split: str, stamps: tuple[int, ...]) -> tuple[dict, ...]:
    where = f"prompt_sets[{task!r}]"
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise PromptSetError(f"{where}: folder {path} does not exist: give a folder with {LAYOUT} (Flow-GRPO's "
                             "dataset layout)")
    meta, text = split_files(path, split)
    if meta.is_file():
        records = [_json_record(meta, n, line, task) for n, line in enumerate(meta.read_text().splitlines(), 1)
                   if line.strip()]
    elif text.is_file():
        records = [{"prompt": line.strip(), "task": task} for line in text.read_text().splitlines() if line.strip()]
    else:
        raise PromptSetError(f"{where}: {path} has neither {meta.name} nor {text.name}: give {LAYOUT}")
    if not records:
        raise PromptSetError(f"{where}: {meta if meta.is_file() else text} has no prompts: write one per line")
    if task == "text":
        for n, r in enumerate(records, 1):
            if target_of(r["prompt"], r) is None:
                raise PromptSetError(f"{where}: prompt {n} of the {split} split ({r['prompt'][:60]!r}) has no text to "
                                     "draw: put it in double quotes in the prompt or in a 'target' field")
    return tuple(records)


def _json_record(path: Path, number: int, line: str, task: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise PromptSetError(f"{path}:{number}: not valid JSON ({err.msg}): one object a line, e.g. "
                             '{"prompt": "a photo of a cat", ...}') from None
    if not isinstance(record, dict) or not str(record.get("prompt", "")).strip():
        raise PromptSetError(f"{path}:{number}: no 'prompt' in this line: each object needs a non-empty prompt")
    return {**record, "prompt": str(record["prompt"]).strip(), "task": task}


def check_prompt_sets(sets: Mapping[str, str]) -> None:
    """Read every split of every set once (the config check): a bad set fails before a run starts."""
    for task, folder in sets.items():
        if task not in TASKS:
            raise PromptSetError(f"prompt_sets[{task!r}]: unknown task: use one of {', '.join(TASKS)}")
        for split in SPLITS:
            read_prompt_set(str(folder), task, split)
