"""Prompt tokenizer of the tiny model: word tokens outside quotes, one token per character inside.

Characters between double quotes become ``<c:X>`` tokens, each tagged with its slot (1-based index
inside the quoted word) and the word's length, so the text encoder can tell the image where every
letter goes and any word can be asked for. Words outside the vocabulary map to ``<unk>`` with a
warning; they never raise.
"""

from __future__ import annotations

import json
import logging
import re
import string
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SPECIAL = ("<pad>", "<unk>", "<bos>", "<eos>", '"')
CHARS = string.ascii_uppercase + string.digits
MAX_SLOT = 8
_TOKEN_RE = re.compile(r'"[^"]*"|[^\s"]+|"')


@dataclass
class TokenBatch:
    ids: torch.Tensor  # [B, L] int64
    slots: torch.Tensor  # [B, L] 0 outside quotes, else 1-based index inside the quoted word
    lengths: torch.Tensor  # [B, L] length of the quoted word a character token belongs to, else 0
    mask: torch.Tensor  # [B, L] bool, True for real tokens


class PromptTokenizer:
    def __init__(self, words: list[str], max_length: int = 24):
        vocab = list(SPECIAL) + [f"<c:{c}>" for c in CHARS] + sorted(set(words) - set(SPECIAL))
        self.vocab = {token: i for i, token in enumerate(vocab)}
        self.max_length = max_length
        self._warned: set[str] = set()

    @classmethod
    def from_prompts(cls, prompts: list[str], max_length: int = 24) -> PromptTokenizer:
        words = {w for p in prompts for w in _TOKEN_RE.findall(p.lower()) if not w.startswith('"')}
        return cls(sorted(words), max_length)

    @property
    def pad_id(self) -> int:
        return self.vocab["<pad>"]

    def __len__(self) -> int:
        return len(self.vocab)

    def tokenize(self, prompt: str) -> list[tuple[str, int, int]]:
        """(token, slot, quoted length) triples, without <bos>/<eos>."""
        out: list[tuple[str, int, int]] = []
        for piece in _TOKEN_RE.findall(prompt):
            if piece.startswith('"') and piece.endswith('"') and len(piece) >= 2:
                chars = piece[1:-1].upper()
                out.append(('"', 0, 0))
                for i, c in enumerate(chars[:MAX_SLOT]):
                    out.append((f"<c:{c}>", i + 1, min(len(chars), MAX_SLOT)))
                out.append(('"', 0, 0))
            else:
                out.append((piece.lower(), 0, 0))
        return out

    def encode(self, prompts: list[str]) -> TokenBatch:
        rows = []
        for prompt in prompts:
            triples = [("<bos>", 0, 0)] + self.tokenize(prompt) + [("<eos>", 0, 0)]
            if len(triples) > self.max_length:
                log.warning("prompt %r is longer than %d tokens: truncated", prompt, self.max_length)
                triples = triples[: self.max_length - 1] + [("<eos>", 0, 0)]
            unknown = [t for t, _, _ in triples if t not in self.vocab]
            fresh = [t for t in unknown if t not in self._warned]
            if fresh:
                self._warned.update(fresh)
                log.warning("unknown words %s in prompt %r map to <unk>; the model was not trained on them",
                            fresh, prompt)
            rows.append([(self.vocab.get(t, self.vocab["<unk>"]), s, n) for t, s, n in triples])
        size = (len(prompts), self.max_length)
        ids = torch.full(size, self.pad_id, dtype=torch.long)
        slots, lengths = torch.zeros(size, dtype=torch.long), torch.zeros(size, dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, : len(row)] = torch.tensor([r[0] for r in row])
            slots[b, : len(row)] = torch.tensor([r[1] for r in row])
            lengths[b, : len(row)] = torch.tensor([r[2] for r in row])
        return TokenBatch(ids, slots, lengths, ids != self.pad_id)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"vocab": self.vocab, "max_length": self.max_length}, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> PromptTokenizer:
        data = json.loads(Path(path).read_text())
        tok = cls([], data["max_length"])
        tok.vocab = {k: int(v) for k, v in data["vocab"].items()}
        return tok
