"""The registry of training methods: one :class:`Method` record per method, read by every surface that names
one (``flowopd train <kind>``, ``flowopd config``, ``runs submit``, ``--record``, the run store's stages, the
reproduce plan and the app's teacher form).

Adding a method is a folder ``flowopd/methods/<kind>/`` (its config, loss and trainer) whose ``__init__``
calls :func:`register_method`; a method outside this package registers the same way, or through the
``flowopd.methods`` entry-point group (``name = "package.module"``, imported on first use). Importing this
module imports no torch: a trainer is named ``"module:function"`` and loaded when a run starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.base import ConfigBase
from ..layout import ADAPTER_DIR, CHECKPOINT_DIR

__all__ = ["Flag", "Method", "get_method", "methods", "register_method", "teacher_methods"]
ENTRY_POINT_GROUP = "flowopd.methods"
_METHODS: dict[str, Method] = {}


@dataclass(frozen=True)
class Flag:
    """A config field that ``flowopd train <kind>`` also takes as a flag (``--lr 1e-4`` for ``lr``)."""

    field: str
    type: Callable[[str], Any] = str

    @property
    def option(self) -> str:
        return "--" + self.field.replace("_", "-")


@dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        kind: its name: ``flowopd train KIND``, ``flowopd runs submit KIND``, the config's ``kind``.
        summary: one line for ``--help``, the store's stage list and the app.
        config: its config class (a :class:`~flowopd.config.base.ConfigBase` of the same ``kind``, torch-free).
        trainer: ``"module:function"`` (or the function itself), called as ``train(model, cfg, out_dir, *,
            callback, resume, accelerator)`` and returning a :class:`flowopd.training.loop.TrainResult`.
        example: the command line ``--help`` shows.
        teacher_source: whether its adapter is a teacher the app's teacher form offers (a student is not).
        outputs: the run-folder entries a run writes (:mod:`flowopd.layout` names).
        adapter_fields: config fields naming adapters (a folder, a run id, or a dict of them), resolved when a
            run is submitted to the store, each with the words kept as they are (``mar_anchor``'s ``base``).
        folder_fields: config fields naming folders, made absolute when the run is submitted.
        flags: config fields ``flowopd train KIND`` also takes as flags; with flags, ``--config`` is optional.
        prepare: ``cfg -> None``: checks that need the disk (a data folder exists), before a model loads.
        preview: ``"module:function"``: ``(model, cfg) -> [flowopd.events.Sample]``, what *sample now* shows.
        done: the command's last line after ``KIND: step N,``: how it names ``TrainResult.epoch``.
    """

    kind: str
    summary: str
    config: type[ConfigBase]
    trainer: str | Callable[..., Any]
    example: str = ""
    teacher_source: bool = True
    outputs: tuple[str, ...] = (CHECKPOINT_DIR, ADAPTER_DIR)
    adapter_fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    folder_fields: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()
    prepare: Callable[[Any], None] | None = None
    preview: str = "flowopd.training.preview:prompt_preview"
    done: str = "epoch {epoch}"

    def __post_init__(self) -> None:
        if getattr(self.config, "kind", None) != self.kind:
            raise ValueError(f"method {self.kind!r}: its config class {self.config.__name__} has kind "
                             f"{getattr(self.config, 'kind', None)!r}; declare it with kind={self.kind!r}")
        if isinstance(self.trainer, str) and ":" not in self.trainer:
            raise ValueError(f"method {self.kind!r}: trainer {self.trainer!r} must be 'module:function'")

    def load_trainer(self) -> Callable[..., Any]:
        """The train function (imports the trainer's module, and so torch)."""
        return _load(self.trainer) if isinstance(self.trainer, str) else self.trainer

    def load_preview(self) -> Callable[..., Any]:
        return _load(self.preview)

    def with_absolute_folders(self, cfg: Any) -> Any:
        """``cfg`` with its folder fields made absolute (a stored snapshot stands on its own); ``prepare`` first."""
        if self.prepare is not None:
            self.prepare(cfg)
        folders = {k: str(Path(getattr(cfg, k)).expanduser().resolve()) for k in self.folder_fields if getattr(cfg, k)}
        return type(cfg).from_dict({**cfg.to_dict(), **folders}) if folders else cfg


def _load(target: str) -> Callable[..., Any]:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def register_method(method: Method) -> Method:
    """Add ``method`` (re-registering a kind replaces it, so a reloaded module stays consistent)."""
    _METHODS[method.kind] = method
    return method


def unregister_method(kind: str) -> None:
    """Remove a registered method (tests that register a toy one)."""
    _METHODS.pop(kind, None)


_loaded = False


def _load_plugins() -> None:
    """The built-in methods and those of installed packages' ``flowopd.methods`` entry points, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("flowopd.methods")  # registers the built-in methods
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(entry.value.split(":")[0])


def methods() -> dict[str, Method]:
    """Kind -> method, the built-in ones first, in registration order."""
    _load_plugins()
    return dict(_METHODS)


def get_method(kind: str) -> Method:
    """The method registered as ``kind``; ValueError naming the known ones otherwise."""
    known = methods()
    if kind not in known:
        raise ValueError(f"unknown training method {kind!r}: use one of {', '.join(known)}")
    return known[kind]


def teacher_methods() -> list[str]:
    """The kinds whose adapters are teachers (the app's teacher form), in registration order."""
    return [kind for kind, method in methods().items() if method.teacher_source]
