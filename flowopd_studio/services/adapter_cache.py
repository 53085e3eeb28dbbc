"""Adapter folders loaded onto the app's model, cached by folder: a second compare loads nothing.

An adapter of the tiny model loads in milliseconds, but a grid of six columns on every click still adds
up, and names on a model must be unique. Each folder gets the name ``studio_<hash>``, where the hash covers
the folder and its weights file's modification time and size: a folder written again (a run that went on
training) gets a new name and its stale adapter is dropped. At most :data:`MAX_CACHED` folders stay loaded;
the least recently used go first. Callers hold the app's lock (the model is shared).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

from flowopd.adapters import WEIGHTS_NAME, drop_adapter, load_adapter
from flowopd.models.base import FlowModel

MAX_CACHED = 24
_ATTR = "_studio_adapter_cache"  # the cache lives on the model it describes


def _stamp(folder: Path) -> str:
    weights = folder / WEIGHTS_NAME
    st = weights.stat() if weights.is_file() else None
    key = f"{folder}|{st.st_mtime_ns if st else 0}|{st.st_size if st else 0}"
    return "studio_" + hashlib.sha1(key.encode()).hexdigest()[:12]


def _cache(model: FlowModel) -> OrderedDict[str, str]:
    cache = getattr(model, _ATTR, None)
    if cache is None:
        cache = OrderedDict()
        setattr(model, _ATTR, cache)
    return cache


def cached_adapter(model: FlowModel, folder: str | Path) -> str:
    """The name under which adapter ``folder`` is on ``model``, loading it first if needed.

    Raises:
        flowopd.adapters.AdapterError: the folder is not an adapter of this base model.
    """
    folder = Path(folder).resolve()
    cache, key, name = _cache(model), str(folder), _stamp(folder)
    old = cache.get(key)
    if old == name:
        cache.move_to_end(key)
        return name
    if old is not None:  # the folder changed since it was loaded
        drop_adapter(model, old)
        del cache[key]
    drop_adapter(model, name)  # left by an earlier cache of an equal stamp
    load_adapter(model, folder, name)
    cache[key] = name
    while len(cache) > MAX_CACHED:
        _, stale = cache.popitem(last=False)
        drop_adapter(model, stale)
    return name


def forget(model: FlowModel, folder: str | Path) -> None:
    """Drop the cached adapter of ``folder`` (e.g. before the folder is deleted)."""
    name = _cache(model).pop(str(Path(folder).resolve()), None)
    if name is not None:
        drop_adapter(model, name)
