"""The base model that runs started from the app train on: built-in tiny, a tiny folder, an SD3 folder or a
Hub id already in the local cache. Checked without loading anything; the choice lives in the store (a
``base_models`` row and the setting ``base_model``), so a second browser sees it too.

The app itself serves the model it was launched with (``--model``); the base chosen here goes into the
configs of the runs started from the Models and Distill tabs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from flowopd.models import looks_like_hub_id
from flowopd.models.presets import DEFAULT_MODEL_DIR

SETTING = "base_model"
BUILTIN = "built-in tiny"
KINDS = (BUILTIN, "tiny folder", "SD3 folder", "Hub id (cached)")


@dataclass(frozen=True)
class BaseModel:
    """A base: ``name`` (the registry key), ``ref`` (what ``load_model`` and run configs take; None = built-in)
    and ``backend`` (tiny | sd3)."""

    name: str
    ref: str | None
    backend: str

    @property
    def path(self) -> str:
        return self.ref or str(DEFAULT_MODEL_DIR)


def hub_cached(repo_id: str) -> bool:
    """Whether the Hub cache holds the pipeline index of ``repo_id`` (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "model_index.json")
    return isinstance(found, str)


def validate_base(kind: str, ref: str | None) -> BaseModel:
    """The base of ``kind`` at ``ref``, checked without loading it.

    Raises:
        ValueError: naming the field and the fix (no such folder, not a tiny/SD3 folder, not cached).
    """
    ref = (ref or "").strip()
    if kind == BUILTIN:
        return BaseModel("tiny-base", None, "tiny")
    if kind not in KINDS:
        raise ValueError(f"Base model kind {kind!r} is unknown: pick one of {', '.join(KINDS)}")
    if not ref:
        raise ValueError(f"Base model path is empty: type the {kind}'s location")
    if kind == "Hub id (cached)":
        if not looks_like_hub_id(ref):
            raise ValueError(f"Base model path {ref!r} is not a Hub id: write owner/name, e.g. "
                             "stabilityai/stable-diffusion-3.5-medium")
        if not hub_cached(ref):
            raise ValueError(f"Base model {ref} is not in the local Hub cache: download it first "
                             f"(`huggingface-cli download {ref}`), or pick its folder")
        return BaseModel(ref, ref, "sd3")
    folder = Path(ref).expanduser()
    if not folder.is_dir():
        raise ValueError(f"Base model path {ref} is not a folder: give the folder that holds the model")
    folder = folder.resolve()
    if kind == "tiny folder":
        config = folder / "config.json"
        try:
            backend = json.loads(config.read_text()).get("backend") if config.is_file() else None
        except (json.JSONDecodeError, AttributeError):
            backend = None
        if backend != "tiny":
            raise ValueError(f"Base model path {folder} is not a tiny checkpoint (its config.json must say "
                             '"backend": "tiny"): give a folder written by `flowopd pretrain`')
        return BaseModel(folder.name, str(folder), "tiny")
    if not (folder / "model_index.json").is_file():
        raise ValueError(f"Base model path {folder} has no model_index.json: give a diffusers SD3/SD3.5 "
                         "pipeline folder")
    return BaseModel(folder.name, str(folder), "sd3")


def kind_of(base: BaseModel) -> tuple[str, str]:
    """The selector's (kind, path) for ``base``: what the Models tab shows for the base new runs train on.

    >>> kind_of(BaseModel("tiny-base", None, "tiny"))
    ('built-in tiny', '')
    """
    if base.ref is None:
        return BUILTIN, ""
    if base.backend == "tiny":
        return "tiny folder", base.ref
    return ("SD3 folder" if Path(base.ref).expanduser().is_dir() else "Hub id (cached)"), base.ref


def choose_base(store, kind: str, ref: str | None) -> BaseModel:
    """Validate and record the base (a ``base_models`` row, the ``base_model`` setting); returns it."""
    base = validate_base(kind, ref)
    store.add_base_model(base.name, base.path, base.backend)
    store.set_setting(SETTING, base.name)
    return base


def current_base(store, app_ref: str | None = None) -> BaseModel:
    """The chosen base; before any choice, the app's own model (``app_ref``; None = the built-in one)."""
    name = store.get_setting(SETTING)
    rows = {r["name"]: r for r in store.base_models()}
    if name in rows:
        row = rows[name]
        ref = None if Path(row["path"]) == DEFAULT_MODEL_DIR else row["path"]
        return BaseModel(name, ref, row["backend"])
    return app_base(app_ref)


def app_base(app_ref: str | None) -> BaseModel:
    """The model the app was launched with (``--model``; None = the built-in one) as a base."""
    if app_ref is None:
        return BaseModel("tiny-base", None, "tiny")
    backend = "tiny" if (Path(app_ref) / "config.json").is_file() else "sd3"
    return BaseModel(Path(app_ref).name if Path(app_ref).is_dir() else app_ref, app_ref, backend)


def ensure_registered(store, base: BaseModel) -> str:
    """Make sure ``base`` has a ``base_models`` row (teachers reference it); returns its name."""
    if base.name not in {r["name"] for r in store.base_models()}:
        store.add_base_model(base.name, base.path, base.backend)
    return base.name
