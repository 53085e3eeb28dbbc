"""What the handlers share: the base model (loaded once at start-up, never inside an event), the data folder
of the run store, and the app's mode. The UI keeps no other state: everything else is read from the store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from flowopd.models.base import FlowModel


@dataclass
class AppState:
    """The app's shared, read-mostly state.

    Attributes:
        model: the base model every tab samples from (adapters are loaded onto it by name).
        model_name: how the UI names it ("built-in tiny-base", a folder, a Hub id).
        model_ref: what ``load_model`` took (None: the built-in model); stored in run configs.
        home: the run store's data folder (``--home``); None: ``$FLOWOPD_HOME``, else ``~/.flowopd``.
        demo: read-only mode (``--demo``, or ``--share`` without auth): generate and compare only.
        lock: sampling is not re-entrant on one model (CFG buffers, torch threads): one request at a time.
    """

    model: FlowModel
    model_name: str
    model_ref: str | None = None
    home: Path | None = None
    demo: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def store(self) -> Iterator:
        """A store connection for one handler call (SQLite connections are per thread)."""
        from ..storage.store import Store

        store = Store(self.home)
        try:
            yield store
        finally:
            store.close()

    @property
    def data_folder(self) -> Path:
        from ..storage.paths import resolve_home

        return resolve_home(self.home)
