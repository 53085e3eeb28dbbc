"""Named errors of the run store. All are ``ValueError``s, so the CLI prints them as one clean line."""

from __future__ import annotations


class StoreError(ValueError):
    """Base class: something about the store, a run or its files is wrong; the message says what to do."""


class RunNotFound(StoreError):
    """No run has this id."""


class InvalidRunId(StoreError):
    """A run id that does not look like one the store generates (``r`` + 10 hex digits)."""


class InvalidRunState(StoreError):
    """The run's status does not allow the operation (e.g. deleting a running run)."""


class UnsafePath(StoreError):
    """A path built from outside input would leave the data folder."""


class UnknownStage(StoreError):
    """No worker stage is registered under this name."""


# The checkpoint a resume needs is missing or unreadable: the library's one class (a ValueError, not a StoreError).
from flowopd.layout import CheckpointError  # noqa: E402, F401


class StoreWriteError(StoreError):
    """SQLite refused a write (disk full, read-only file, I/O error)."""


class RunTakenOver(StoreError):
    """A worker found its run no longer running under its pid (marked interrupted, deleted): it must exit."""
