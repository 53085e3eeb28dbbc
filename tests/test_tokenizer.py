"""The prompt tokenizer: per-character tokens inside quotes, <unk> with a warning, save/load."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from flowopd.tokenizer import MAX_SLOT, PromptTokenizer

WORDS = ["a", "sign", "that", "says", "photo", "of", "circle", "red"]


@pytest.fixture
def tok() -> PromptTokenizer:
    return PromptTokenizer(WORDS, max_length=16)


def test_quoted_characters_are_one_token_each(tok: PromptTokenizer) -> None:
    assert tok.tokenize('a sign that says "tea"') == [
        ("a", 0, 0), ("sign", 0, 0), ("that", 0, 0), ("says", 0, 0),
        ('"', 0, 0), ("<c:T>", 1, 3), ("<c:E>", 2, 3), ("<c:A>", 3, 3), ('"', 0, 0),
    ]


def test_encode_ids_slots_lengths_mask(tok: PromptTokenizer) -> None:
    batch = tok.encode(['says "HENRY"', "a red circle"])
    assert batch.ids.shape == batch.slots.shape == batch.lengths.shape == batch.mask.shape == (2, 16)
    assert batch.ids.dtype == torch.long and batch.mask.dtype == torch.bool
    v = tok.vocab
    row = [v["<bos>"], v["says"], v['"']] + [v[f"<c:{c}>"] for c in "HENRY"] + [v['"'], v["<eos>"]]
    assert batch.ids[0, :10].tolist() == row
    assert batch.slots[0, :10].tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 0, 0]
    assert batch.lengths[0, :10].tolist() == [0, 0, 0, 5, 5, 5, 5, 5, 0, 0]
    assert batch.mask[0].tolist() == [True] * 10 + [False] * 6
    assert (batch.ids[0, 10:] == tok.pad_id).all()
    assert batch.ids[1, :5].tolist() == [v["<bos>"], v["a"], v["red"], v["circle"], v["<eos>"]]
    assert batch.slots[1].sum() == 0 and batch.lengths[1].sum() == 0


def test_words_are_lower_cased_and_long_quotes_capped(tok: PromptTokenizer) -> None:
    assert tok.tokenize("A RED Circle") == [("a", 0, 0), ("red", 0, 0), ("circle", 0, 0)]
    chars = tok.tokenize('"ABCDEFGHIJ"')[1:-1]
    assert len(chars) == MAX_SLOT and chars[-1] == ("<c:H>", MAX_SLOT, MAX_SLOT)


def test_unknown_word_maps_to_unk_with_one_warning(tok: PromptTokenizer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flowopd.tokenizer"):
        batch = tok.encode(["a photo of a zebra"])
    assert batch.ids[0, 5].item() == tok.vocab["<unk>"]
    assert batch.ids[0, :5].tolist() == [tok.vocab[t] for t in ("<bos>", "a", "photo", "of", "a")]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "zebra" in warnings[0].getMessage() and "<unk>" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flowopd.tokenizer"):
        tok.encode(["a zebra"])
    assert not caplog.records  # warned once per word


def test_unknown_character_in_quotes_is_unk(tok: PromptTokenizer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flowopd.tokenizer"):
        batch = tok.encode(['says "A!"'])
    assert batch.ids[0, 4].item() == tok.vocab["<unk>"] and batch.slots[0, 4].item() == 2
    assert "<c:!>" in caplog.text


def test_long_prompt_is_truncated_with_eos(tok: PromptTokenizer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flowopd.tokenizer"):
        batch = tok.encode([" ".join(["red"] * 30)])
    assert batch.mask[0].all() and batch.ids[0, -1].item() == tok.vocab["<eos>"]
    assert "truncated" in caplog.text


def test_empty_prompt(tok: PromptTokenizer) -> None:
    batch = tok.encode([""])
    assert batch.ids[0, :2].tolist() == [tok.vocab["<bos>"], tok.vocab["<eos>"]] and batch.mask[0].sum() == 2


def test_from_prompts_vocabulary() -> None:
    tok = PromptTokenizer.from_prompts(['a sign that says "TEA"', "two red circles"])
    assert {"a", "sign", "that", "says", "two", "red", "circles"} <= set(tok.vocab)
    assert '"tea"' not in tok.vocab and "tea" not in tok.vocab  # quoted words are spelled, not learnt
    assert sorted(tok.vocab.values()) == list(range(len(tok)))


def test_save_load_round_trip(tok: PromptTokenizer, tmp_path: Path) -> None:
    tok.save(tmp_path / "vocab.json")
    loaded = PromptTokenizer.load(tmp_path / "vocab.json")
    assert loaded.vocab == tok.vocab and loaded.max_length == tok.max_length and len(loaded) == len(tok)
    prompts = ['a sign that says "TEA"', "a red circle", "unknown words here"]
    a, b = tok.encode(prompts), loaded.encode(prompts)
    for name in ("ids", "slots", "lengths", "mask"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
