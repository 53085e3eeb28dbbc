"""File names that came from a user, and the only files the app hands to a browser.

The app writes into, and serves from, the data folder's ``exports/`` and a run's ``samples/`` or
``exports/``; nothing else. A file name from a form is a plain name: no folder part, no ``..``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from flowopd.layout import EXPORTS_DIR, SAMPLES_DIR

from ..storage.errors import UnsafePath
from ..storage.paths import RUNS_DIR, inside

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def safe_name(name: str, what: str = "file name") -> str:
    """``name`` if it is a plain file name (letters, digits, ``.``, ``_``, ``-``; no ``..``), else UnsafePath.

    >>> safe_name("grid-1.png")
    'grid-1.png'
    >>> safe_name("../etc/passwd")
    Traceback (most recent call last):
    ...
    flowopd_studio.storage.errors.UnsafePath: file name '../etc/passwd' is not a plain name: use letters, ...
    """
    name = str(name or "").strip()
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise UnsafePath(f"{what} {name!r} is not a plain name: use letters, digits, '.', '_' and '-' "
                         "(no folder, no '..'), e.g. grid.png")
    return name


def exports_folder(home: Path) -> Path:
    """The data folder's ``exports/`` (created)."""
    folder = inside(home, EXPORTS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def export_path(home: Path, name: str) -> Path:
    """``home/exports/<name>`` for a plain ``name`` (see :func:`safe_name`)."""
    return inside(exports_folder(home), safe_name(name))


def servable(home: Path, path: str | Path) -> Path:
    """``path`` resolved, if it lies in ``home/exports`` or ``home/runs/<id>/samples|exports``; else UnsafePath."""
    root = Path(home).resolve()
    resolved = Path(path).resolve()
    if resolved.is_relative_to(root / EXPORTS_DIR):
        return resolved
    if resolved.is_relative_to(root / RUNS_DIR):
        parts = resolved.relative_to(root / RUNS_DIR).parts
        if len(parts) >= 3 and parts[1] in (SAMPLES_DIR, EXPORTS_DIR):
            return resolved
    raise UnsafePath(f"{resolved} is not served: only the data folder's exports/ and runs' samples/ and "
                     "exports/ are")


def serve_copy(home: Path, path: str | Path) -> str:
    """A temporary copy of a servable file (see :func:`servable`) under its own name, for a download."""
    source = servable(home, path)
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist: export it again")
    folder = Path(tempfile.mkdtemp(prefix="flowopd-download-"))
    return str(shutil.copy2(source, folder / source.name))
