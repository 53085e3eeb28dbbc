"""One base for every stage config: typed fields with help, bounds and choices; validation; JSON; a registry.

A config is a dataclass subclassing :class:`ConfigBase` with ``kind="..."`` in its class line, each field
made by :func:`option`::

    @dataclass
    class SFTConfig(ConfigBase, kind="sft"):
        steps: int = option(200, "optimizer steps", min=1)

        def check(self) -> None:  # cross-field invariants; the metadata checks ran already
            ...

Construction checks every field against its metadata (type, choices, bounds) and then calls ``check``.
The JSON form is ``{"kind": ..., field: value, ...}``; :func:`read_config` is the one reader of config
files. Importing this module imports nothing heavy (no torch, diffusers or gradio).
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="ConfigBase")
CONFIGS: dict[str, type[ConfigBase]] = {}  # kind -> class, filled as config classes are defined
# The modules defining registered configs, imported by config_kinds() so every kind is known: the training
# methods' registry (each method's config, and plugins' through entry points) and the other stages' configs.
# Imported by name, lazily: the one place this package reaches above itself.
CONFIG_MODULES = ("flowopd.methods", "flowopd.coldstart.config", "flowopd.config.pretrain", "flowopd.config.eval",
                  "flowopd.reproduce.config", "flowopd.models.tiny_config")
_TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
               "dict": "a JSON object", "list": "a list"}


def option(default: Any, help: str, *, choices: tuple | None = None, min: float | None = None,
           max: float | None = None, min_open: bool = False, max_open: bool = False,
           group: str | None = None) -> Any:
    """A config field with its help text, allowed values and group in the field's metadata.

    Args:
        default: the default value; a dict, list or config is copied per instance.
        help: one line for forms, ``flowopd config KIND`` and ``--help``.
        choices: the allowed values.
        min: the smallest allowed value (excluded when ``min_open``).
        max: the largest allowed value (excluded when ``max_open``).
        group: a heading that gathers related fields in forms.
    """
    meta = {"help": help, "choices": choices, "min": min, "max": max, "min_open": min_open, "max_open": max_open,
            "group": group}
    if isinstance(default, (dict, list, ConfigBase)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FieldInfo:
    """One field as forms and the CLI show it (a nested config's fields are named ``parent.field``)."""

    name: str
    type: str
    default: Any
    help: str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    group: str | None = None

    def bounds(self) -> str:
        """The allowed range as text, e.g. ``>= 1``, ``(0, 2]``, ``1..1000``; empty when unbounded."""
        lo, hi = self.min, self.max
        if lo is not None and hi is not None:
            if not self.min_open and not self.max_open:
                return f"{lo}..{hi}"
            return f"{'(' if self.min_open else '['}{lo}, {hi}{')' if self.max_open else ']'}"
        if lo is not None:
            return f"{'>' if self.min_open else '>='} {lo}"
        if hi is not None:
            return f"{'<' if self.max_open else '<='} {hi}"
        return ""


def fail(name: str, value: Any, fix: str) -> None:
    """Raise the configs' one error form: ``name=value is invalid: fix``."""
    raise ValueError(f"{name}={value!r} is invalid: {fix}")


class ConfigBase:
    """Base of every config dataclass: metadata-driven validation, JSON round-trip, ``describe()``, registry.

    Subclasses are ``@dataclass`` classes; ``kind="..."`` in the class line registers them in
    :data:`CONFIGS`. Class-specific (cross-field) checks go in :meth:`check`.
    """

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, kind: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind is not None:
            if kind in CONFIGS and CONFIGS[kind].__qualname__ != cls.__qualname__:
                raise ValueError(f"config kind {kind!r} is taken by {CONFIGS[kind].__name__}: pick another")
            cls.kind = kind
            CONFIGS[kind] = cls

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in fields(self):
            nested = _nested_class(hints[f.name])
            value = getattr(self, f.name)
            if nested is not None and isinstance(value, dict):
                try:
                    value = nested.from_dict(value)
                except ValueError as err:
                    raise ValueError(f"{f.name}: {err}") from None
                object.__setattr__(self, f.name, value)  # also for frozen configs
            _check_field(f, value, hints[f.name], nested)
        self.check()

    def check(self) -> None:
        """Cross-field invariants of this config; raise ``ValueError`` via :func:`fail`."""

    # --- JSON -----------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """``{"kind": ..., field: value, ...}``, JSON-safe (nested configs become plain dicts)."""
        return {"kind": self.kind, **asdict(self)}

    def to_json(self, path: str | Path | None = None) -> str:
        """The JSON text of :meth:`to_dict`, also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls: type[T], data: dict) -> T:
        """From a dict of fields (a ``kind`` key is optional, but must match); unknown keys are refused."""
        if not isinstance(data, dict):
            raise ValueError(f"a {cls.kind} config must be a JSON object of field: value, got "
                             f"{type(data).__name__}")
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ValueError(f"this is a {kind!r} config, not a {cls.kind!r} one: pass it to the {kind} command")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.kind} config keys {unknown}: known keys are {sorted(known)}")
        return cls._from_fields(data)

    @classmethod
    def _from_fields(cls: type[T], data: dict) -> T:
        """Build from known field names (a config with presets overrides this)."""
        return cls(**data)

    @classmethod
    def from_json(cls: type[T], source: str | Path) -> T:
        """From a JSON string or the path of a JSON file."""
        if str(source).lstrip().startswith("{"):
            return cls.from_dict(_parse(str(source), "config"))
        return read_config(source, cls)

    # --- descriptions ---------------------------------------------------------------------------------------

    @classmethod
    def describe(cls) -> list[FieldInfo]:
        """Every field (nested configs' fields follow their parent as ``parent.field``) for forms and the CLI."""
        hints, out = _hints(cls), []
        for f in fields(cls):
            meta, nested = f.metadata, _nested_class(hints[f.name])
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if isinstance(default, ConfigBase):
                default = asdict(default)
            out.append(FieldInfo(f.name, str(f.type), default, meta.get("help", ""), meta.get("choices"),
                                 meta.get("min"), meta.get("max"), meta.get("min_open", False),
                                 meta.get("max_open", False), meta.get("group")))
            if nested is not None:
                for sub in nested.describe():
                    sub_default = default.get(sub.name, sub.default) if isinstance(default, dict) else sub.default
                    out.append(FieldInfo(**{**asdict(sub), "name": f"{f.name}.{sub.name}", "default": sub_default,
                                            "group": f.name}))
        return out

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text (top-level fields)."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}

    @classmethod
    def field_info(cls, name: str) -> FieldInfo:
        """The description of field ``name`` (e.g. for a CLI flag mirroring it)."""
        for info in cls.describe():
            if info.name == name:
                return info
        raise KeyError(f"{cls.__name__} has no field {name!r}")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field annotations of ``cls`` (cached: configs are built often)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _nested_class(hint: Any) -> type[ConfigBase] | None:
    for option_type in typing.get_args(hint) or (hint,):
        if isinstance(option_type, type) and issubclass(option_type, ConfigBase):
            return option_type
    return None


def _type_ok(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint) or hint
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if origin is list:
        return isinstance(value, (list, tuple))
    if origin is Any:
        return True
    return isinstance(value, origin)


def _type_words(hint: Any) -> str:
    args = [h for h in typing.get_args(hint) if h is not type(None)] or [hint]
    names = [_TYPE_WORDS.get(getattr(typing.get_origin(h) or h, "__name__", ""), "a config object") for h in args]
    return " or ".join(names) + (" or null" if type(None) in typing.get_args(hint) else "")


def _check_field(f: Any, value: Any, hint: Any, nested: type[ConfigBase] | None) -> None:
    """Type, choices and bounds of one field, from its annotation and :func:`option` metadata."""
    if not _type_ok(value, hint):
        fail(f.name, value, f"use {_type_words(hint)}")
    meta = f.metadata
    if value is None or nested is not None:
        return
    if meta.get("choices") is not None and value not in meta["choices"]:
        fail(f.name, value, f"use one of {', '.join(map(str, meta['choices']))}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is None and hi is None:
        return
    too_low = lo is not None and (value <= lo if meta.get("min_open") else value < lo)
    too_high = hi is not None and (value >= hi if meta.get("max_open") else value > hi)
    if too_low or too_high:
        fail(f.name, value, _bounds_fix(hint is int, meta))


def _bounds_fix(integer: bool, meta: Any) -> str:
    lo, hi, lo_open, hi_open = meta.get("min"), meta.get("max"), meta.get("min_open"), meta.get("max_open")
    what = "whole number" if integer else "number"
    if hi is None and lo == 0 and lo_open:
        return f"use a positive {'integer' if integer else 'number'}"
    if hi is None and lo == 1 and integer and not lo_open:
        return "use a positive integer"
    info = FieldInfo("", "", None, "", min=lo, max=hi, min_open=bool(lo_open), max_open=bool(hi_open))
    if lo is not None and hi is not None:
        if integer and not lo_open and not hi_open:
            return f"use a whole number from {lo} to {hi}"
        return f"use a {what} in {info.bounds()}"
    return f"use a {what} {info.bounds()}"


def config_kinds() -> list[str]:
    """Every registered config kind, sorted (the modules in :data:`CONFIG_MODULES` are imported first)."""
    for module in CONFIG_MODULES:
        importlib.import_module(module)
    importlib.import_module("flowopd.methods").methods()  # and the methods of installed plugins
    return sorted(CONFIGS)


def config_class(kind: str) -> type[ConfigBase]:
    """The config class registered as ``kind`` (grpo, opd, coldstart, pretrain, eval, reproduce, tiny, ...)."""
    if kind not in config_kinds():
        raise ValueError(f"unknown config kind {kind!r}: use one of {', '.join(config_kinds())}")
    return CONFIGS[kind]


# --- the one reader of config files ---------------------------------------------------------------------------


def _parse(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where} is not valid JSON ({err}): fix it, or write it with to_json") from None


def read_config_data(path: str | Path, kind: str) -> dict:
    """The JSON object in the config file ``path`` (fields of a ``kind`` config), unvalidated.

    For callers that resolve fields before building the config (``flowopd runs submit``); wrap that step in
    :func:`naming_file`. Everyone else uses :func:`read_config`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid JSON, or not a JSON object.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} does not exist: write a JSON object of {kind} config fields "
                                f"(`flowopd config {kind}` lists them)")
    data = _parse(p.read_text(), f"config file {p}")
    if not isinstance(data, dict):
        raise ValueError(f"config file {p} must hold a JSON object of {kind} config fields, not a "
                         f"{type(data).__name__}")
    return data


@contextmanager
def naming_file(path: str | Path | None) -> Iterator[None]:
    """Prefix a ``ValueError`` raised inside with ``config file PATH:`` (nothing when ``path`` is None)."""
    try:
        yield
    except ValueError as err:
        if path is None or str(err).startswith(f"config file {path}"):
            raise
        raise ValueError(f"config file {path}: {err}") from None


def read_config(path: str | Path | None, cls: type[T], overrides: dict | None = None) -> T:
    """The ``cls`` config in the JSON file ``path`` with ``overrides`` (e.g. command-line flags) applied.

    ``path`` None gives the defaults with ``overrides``. Every error names the file and the fix.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid JSON, not an object, unknown keys or a bad value.
    """
    data = read_config_data(path, cls.kind) if path is not None else {}
    with naming_file(path):
        return cls.from_dict({**data, **(overrides or {})})

