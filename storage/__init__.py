"""Runs that last: the SQLite run store, the queue and the background worker processes.

* :mod:`.store` — :class:`Store`, the only module that writes SQL (schema in :mod:`.db`);
* :mod:`.queue` — ``submit``, ``tick``, ``stop``, ``resume``: the run lifecycle;
* :mod:`.worker` — ``python -m flowopd_studio.storage.worker``: one run in its own process;
* :mod:`.stages` — the registry of what a run can be (``pretrain``, ``eval``);
* :mod:`.cli` — ``flowopd runs ...``.

See docs/storage.md. Importing this package is cheap: the names below load their modules on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"Store": "store", "Run": "records", "submit": "queue", "tick": "queue", "stop": "queue",
            "resume": "queue", "StoreError": "errors", "RunNotFound": "errors", "InvalidRunState": "errors"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
