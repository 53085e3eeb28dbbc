"""Building config dataclasses from JSON-like dicts with clear errors."""

from __future__ import annotations

from dataclasses import fields
from typing import TypeVar

T = TypeVar("T")


def build_strict(cls: type[T], data: dict, kind: str) -> T:
    """``cls(**data)``, refusing keys that are not fields of ``cls`` with a message naming them and the
    known ones (``kind`` names the config in the message, e.g. "pretrain")."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {kind} config keys {unknown}: known keys are {sorted(known)}")
    return cls(**data)
