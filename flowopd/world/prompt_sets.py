"""Your own prompt sets in Flow-GRPO's dataset layout, in place of the tiny world's splits for the tasks they name.

A folder per task holds ``train.txt`` / ``test.txt`` (one prompt a line) or ``train_metadata.jsonl`` /
``test_metadata.jsonl`` (one JSON object a line with a ``prompt`` and the task's metadata: GenEval's objects,
OCR's target text), so Flow-GRPO's own OCR, GenEval and PickScore prompt files work as they are. A stage's
config field ``prompt_sets`` ({task: folder}) makes :func:`flowopd.world.splits.load_prompts` return these
records (each with its ``task``) for its run: rollouts, samples and evaluation all read them, and the rewards
receive each record as its metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from .prompts import TASKS, target_of
from .splits import read_prompt_file

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
    source = meta if meta.is_file() else text if text.is_file() else None
    if source is None:
        raise PromptSetError(f"{where}: {path} has neither {meta.name} nor {text.name}: give {LAYOUT}")
    if not source.read_text().strip():  # read_prompt_file's own message names no prompt_sets
        raise PromptSetError(f"{where}: {source} has no prompts: write one per line")
    try:  # the project's reader of prompt files: one JSON object or one prompt a line
        records = [{**r, "prompt": str(r["prompt"]).strip(), "task": task} for r in read_prompt_file(source)]
    except ValueError as err:
        raise PromptSetError(f"{where}: {err}") from None
    if task == "text":
        for n, r in enumerate(records, 1):
            if target_of(r["prompt"], r) is None:
                raise PromptSetError(f"{where}: prompt {n} of the {split} split ({r['prompt'][:60]!r}) has no text to "
                                     "draw: put it in double quotes in the prompt or in a 'target' field")
    return tuple(records)


def check_prompt_sets(sets: Mapping[str, str]) -> None:
    """Read every split of every set once (the config check): a bad set fails before a run starts."""
    for task, folder in sets.items():
        if task not in TASKS:
            raise PromptSetError(f"prompt_sets[{task!r}]: unknown task: use one of {', '.join(TASKS)}")
        for split in SPLITS:
            read_prompt_set(str(folder), task, split)
