"""Building config dataclasses from JSON-like dicts with clear errors."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
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


def read_config_file(path: str | Path, kind: str) -> dict:
    """The JSON object in ``path`` (a ``--config`` file of ``kind`` fields), or an error naming the file and the fix.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid JSON, or not a JSON object.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} does not exist: write a JSON object of {kind} config fields")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"config file {p} is not valid JSON ({err}): give a JSON object of {kind} config "
                         "fields") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {p} must hold a JSON object of {kind} config fields")
    return data
