"""Fixed train and test prompt splits, generated from a seed and saved as JSONL.

The files under ``flowopd/data/prompts`` are what every run and report uses; ``flowopd world splits``
rewrites them from ``SPLIT_SEED`` (the result is identical). Test prompts are never trained on: the
``text`` test words never occur in any train prompt, nor in pretraining, and a fifth of the
``color_attr`` combinations are likewise held out. The other compose categories have only 3 to 24
possible prompts, so their test prompts repeat train prompts (with other seeds), as in GenEval.

The ``mixed`` split (prompts that touch two tasks, :func:`flowopd.world.prompts.mixed_record`) is drawn after
the four tasks' splits from its own seed, ``SPLIT_SEED + 1``, so adding it left their files unchanged. Its
test prompts write held-out ``text`` test words (one each, never trained on); its train prompts other words.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from .prompts import (
    COMPOSE_TAGS,
    MIXED,
    PROMPT_SETS,
    TASKS,
    compose_record,
    mixed_record,
    prefer_record,
    random_word,
    sample_record,
    text_record,
)

SPLIT_SEED = 20260508
PROMPT_DIR = Path(__file__).resolve().parent.parent / "data" / "prompts"
TEST_SIZES = {"compose": 16 * len(COMPOSE_TAGS), "text": 64, "prefer": 48, "quality": 48, MIXED: 48}
TRAIN_SIZES = {"compose": 3000, "text": 3000, "prefer": 1500, "quality": 1500, MIXED: 1000}


def _held_out(rng: random.Random) -> tuple[frozenset[str], frozenset[str]]:
    words: set[str] = set()
    while len(words) < TEST_SIZES["text"]:
        words.add(random_word(rng))
    combos = sorted({compose_record("color_attr", random.Random(i))["prompt"] for i in range(5000)})
    attr = set(rng.sample(combos, len(combos) // 5))
    return frozenset(words), frozenset(attr)


@lru_cache(maxsize=1)
def held_out() -> tuple[frozenset[str], frozenset[str]]:
    """(test words, held-out color_attr prompts) that no training may see."""
    return _held_out(random.Random(SPLIT_SEED))


def is_held_out(record: dict) -> bool:
    words, attr = held_out()
    return record.get("target") in words or record["prompt"] in attr


def build_splits(seed: int = SPLIT_SEED) -> dict[str, dict[str, list[dict]]]:
    rng = random.Random(seed)
    words, attr = _held_out(rng)
    out: dict[str, dict[str, list[dict]]] = {t: {"train": [], "test": []} for t in TASKS}
    # Test sets: balanced categories, fixed order.
    for i in range(TEST_SIZES["compose"]):
        tag = COMPOSE_TAGS[i % len(COMPOSE_TAGS)]
        record = compose_record(tag, rng)
        while tag == "color_attr" and record["prompt"] not in attr:
            record = compose_record(tag, rng)
        out["compose"]["test"].append(dict(record, task="compose", tag=tag))
    for word in sorted(words):
        out["text"]["test"].append(dict(text_record(word, rng), task="text"))
    out["prefer"]["test"] = [dict(prefer_record(rng), task="prefer") for _ in range(TEST_SIZES["prefer"])]
    quality_sources = ("compose", "text", "prefer")
    for i in range(TEST_SIZES["quality"]):
        source = quality_sources[i % 3]
        record = dict(out[source]["test"][i // 3], task="quality", source_task=source)
        out["quality"]["test"].append(record)
    for task in TASKS:
        train = out[task]["train"]
        while len(train) < TRAIN_SIZES[task]:
            record = sample_record(task, rng)
            if not (record.get("target") in words or record["prompt"] in attr):
                train.append(record)
    out[MIXED] = build_mixed(words, seed + 1)
    return out


def build_mixed(test_words: frozenset[str], seed: int) -> dict[str, list[dict]]:
    """The mixed split: ``TEST_SIZES["mixed"]`` test prompts of distinct held-out words, then train prompts of
    other words (no prompt twice)."""
    rng = random.Random(seed)
    test = [mixed_record(w, rng) for w in rng.sample(sorted(test_words), TEST_SIZES[MIXED])]
    train: list[dict] = []
    seen: set[str] = set()
    while len(train) < TRAIN_SIZES[MIXED]:
        word = random_word(rng)
        record = mixed_record(word, rng)
        if word not in test_words and record["prompt"] not in seen:
            seen.add(record["prompt"])
            train.append(record)
    return {"test": test, "train": train}


def write_splits(directory: Path = PROMPT_DIR, seed: int = SPLIT_SEED) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for task, splits in build_splits(seed).items():
        for split, records in splits.items():
            path = directory / f"{task}_{split}.jsonl"
            path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
            paths.append(path)
    return paths


def read_prompt_file(path: str | Path) -> list[dict]:
    """Read a JSONL prompt file; a plain text file gives one ``{"prompt": line}`` record per line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {path} does not exist: pass an existing .jsonl or .txt file")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg}): each line must be one "
                                 'JSON object such as {"prompt": "a photo of a circle"}') from None
            if not isinstance(record, dict) or not str(record.get("prompt", "")).strip():
                raise ValueError(f'{path}:{number}: a record needs a non-empty "prompt" field')
        else:
            record = {"prompt": line.strip()}
        records.append(record)
    if not records:
        raise ValueError(f"prompt file {path} holds no prompts: write one prompt per line")
    return records


_OWN_SETS: dict[str, str] = {}  # task -> folder of the user's prompt set in use in this process


def use_prompt_sets(sets: Mapping[str, str | Path]) -> dict[str, str]:
    """From now on, :func:`load_prompts` reads ``sets`` (task -> folder, :mod:`.prompt_sets`) for their tasks, the
    committed splits for the others; returns the mapping it replaces (to put back when the run ends).

    Raises:
        PromptSetError: a set cannot be read (nothing changes then).
    """
    from .prompt_sets import check_prompt_sets

    resolved = {t: str(Path(f).expanduser().resolve()) for t, f in sets.items()}
    check_prompt_sets(resolved)
    previous = dict(_OWN_SETS)
    _OWN_SETS.clear()
    _OWN_SETS.update(resolved)
    _prompt_index.cache_clear()
    return previous


def prompt_source(task: str) -> str | None:
    """The folder of the user's prompt set in use for ``task``, or None for the world's splits."""
    return _OWN_SETS.get(task)


def load_prompts(task: str, split: str) -> list[dict]:
    """The prompt records of ``task`` (one of ``PROMPT_SETS``: the four tasks, or ``mixed``) and ``split``
    ("train" or "test"): the committed split, or the user's set in use for the task (:func:`use_prompt_sets`)."""
    if task not in PROMPT_SETS:
        raise ValueError(f"unknown task {task!r}: use one of {', '.join(PROMPT_SETS)}")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}: use 'train' or 'test'")
    if task in _OWN_SETS:
        from .prompt_sets import read_prompt_set

        return [dict(r) for r in read_prompt_set(_OWN_SETS[task], task, split)]
    return read_prompt_file(PROMPT_DIR / f"{task}_{split}.jsonl")


@lru_cache(maxsize=1)
def _prompt_index() -> dict[str, dict]:
    return {r["prompt"]: r for t in PROMPT_SETS for s in ("train", "test") for r in load_prompts(t, s)}


def record_for_prompt(prompt: str) -> dict:
    """The metadata record of a known prompt (any task, any split); else just ``{"prompt": prompt}``."""
    return dict(_prompt_index().get(prompt.strip(), {"prompt": prompt}))
