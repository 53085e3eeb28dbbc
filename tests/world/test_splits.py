"""Prompt splits: committed files equal their regeneration; test prompts never leak into training."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from flowopd.pretrain import PretrainConfig, scene_batch
from flowopd.world.prompts import COMPOSE_TAGS, MIXED, PROMPT_SETS, TASKS
from flowopd.world.splits import (
    PROMPT_DIR,
    TEST_SIZES,
    TRAIN_SIZES,
    build_splits,
    held_out,
    load_prompts,
    read_prompt_file,
    write_splits,
)

QUOTED = re.compile(r'"([^"]*)"')


@pytest.fixture(scope="module")
def splits() -> dict:
    return build_splits()


def _quoted_words(records: list[dict]) -> set[str]:
    return {w for r in records for w in QUOTED.findall(r["prompt"])} | {r["target"] for r in records if "target" in r}


def test_committed_files_equal_regeneration(splits: dict) -> None:
    for task in PROMPT_SETS:
        for split in ("train", "test"):
            assert load_prompts(task, split) == splits[task][split], f"{task}_{split}.jsonl is stale"


def test_regeneration_is_deterministic_and_written_identically(splits: dict, tmp_path: Path) -> None:
    assert build_splits() == splits
    paths = write_splits(tmp_path)
    assert len(paths) == 2 * len(PROMPT_SETS)
    for path in paths:
        assert path.read_bytes() == (PROMPT_DIR / path.name).read_bytes()
    assert build_splits(seed=1) != splits  # the seed matters


def test_sizes_and_balance(splits: dict) -> None:
    for task in TASKS:
        assert len(splits[task]["test"]) == TEST_SIZES[task]
        assert len(splits[task]["train"]) == TRAIN_SIZES[task]
        assert all(r["task"] == task and r["prompt"].strip() for s in ("train", "test") for r in splits[task][s])
    tags = [r["tag"] for r in splits["compose"]["test"]]
    assert {t: tags.count(t) for t in COMPOSE_TAGS} == dict.fromkeys(COMPOSE_TAGS, 16)


def test_text_test_words_never_in_training(splits: dict) -> None:
    test_words = {r["target"] for r in splits["text"]["test"]}
    assert len(test_words) == TEST_SIZES["text"]
    assert test_words == held_out()[0]
    for task in PROMPT_SETS:
        train = splits[task]["train"]
        assert not test_words & _quoted_words(train), task
        assert not any(re.search(rf"\b{w}\b", r["prompt"]) for r in train for w in test_words), task


def test_held_out_color_attr_prompts_not_in_training(splits: dict) -> None:
    attr = held_out()[1]
    test_attr = {r["prompt"] for r in splits["compose"]["test"] if r["tag"] == "color_attr"}
    assert test_attr and test_attr <= attr
    for task in PROMPT_SETS:
        assert not attr & {r["prompt"] for r in splits[task]["train"]}, task


def test_pretraining_batches_avoid_held_out_prompts() -> None:
    words, attr = held_out()
    cfg = PretrainConfig(batch_size=256, caption_dropout=0.0, task_weights={"compose": 0.5, "text": 0.5})
    _, prompts = scene_batch(random.Random(0), cfg)
    assert len(prompts) == 256
    assert not words & {w for p in prompts for w in QUOTED.findall(p)}
    assert not attr & set(prompts)


def test_read_prompt_file_jsonl_and_text(tmp_path: Path) -> None:
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a photo of a circle", "tag": "x"}\n\n{"prompt": "two"}\n')
    assert read_prompt_file(jsonl) == [{"prompt": "a photo of a circle", "tag": "x"}, {"prompt": "two"}]
    txt = tmp_path / "p.txt"
    txt.write_text("a red circle\n   \n  the word \"TEA\"  \n")
    assert read_prompt_file(txt) == [{"prompt": "a red circle"}, {"prompt": 'the word "TEA"'}]


def test_read_prompt_file_malformed_jsonl_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok"}\n{"prompt": oops}\n')
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:2: not valid JSON"):
        read_prompt_file(path)


@pytest.mark.parametrize("line", ['{"tag": "no prompt"}', '{"prompt": "   "}', '["a list"]', '"a string"'])
def test_read_prompt_file_needs_a_prompt_field(tmp_path: Path, line: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok"}\n\n' + line + "\n")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}:3: .*prompt"):
        read_prompt_file(path)


@pytest.mark.parametrize("name, text", [("empty.jsonl", ""), ("blank.txt", "\n  \n")])
def test_read_prompt_file_empty(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} holds no prompts"):
        read_prompt_file(path)


def test_read_prompt_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        read_prompt_file(path)
    with pytest.raises(FileNotFoundError):
        read_prompt_file(tmp_path)  # a folder is not a prompt file


def test_mixed_split_sizes_words_and_labels(splits: dict) -> None:
    test, train = splits[MIXED]["test"], splits[MIXED]["train"]
    assert (len(test), len(train)) == (TEST_SIZES[MIXED], TRAIN_SIZES[MIXED])
    assert {r["target"] for r in test} <= held_out()[0] and len({r["target"] for r in test}) == len(test)
    assert len({r["prompt"] for r in train}) == len(train)
    for record in test + train:
        assert record["task"] == MIXED and record["tasks"] == {"compose": 0.5, "text": 0.5}
        assert record["target"] in record["prompt"] and record["include"]


def test_load_prompts_rejects_unknown_task_and_split() -> None:
    with pytest.raises(ValueError, match="compose, text, prefer, quality, mixed") as err:
        load_prompts("painting", "test")
    assert "painting" in str(err.value)
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_prompts("compose", "val")


def test_committed_files_are_sorted_key_jsonl() -> None:
    for path in sorted(PROMPT_DIR.glob("*.jsonl")):
        for line in path.read_text().splitlines()[:5]:
            record = json.loads(line)
            assert line == json.dumps(record, sort_keys=True)
