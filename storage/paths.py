"""The data folder ("home") and every path inside it.

Layout::

    HOME/                       --home DIR, else $FLOWOPD_HOME, else ~/.flowopd
      flowopd.db                the SQLite store (plus -wal and -shm files in WAL mode)
      runs/<run_id>/            one folder per run: worker.log, config.json, checkpoint/, samples/, ...

Any path built from a run id or a file name that came from outside (CLI argument, database row, web
request) goes through :func:`inside`, which resolves it (symlinks included) and refuses anything that
would leave HOME.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import flowopd

from .errors import InvalidRunId, UnsafePath

DB_FILE = "flowopd.db"
RUNS_DIR = "runs"
LOG_FILE = "worker.log"
HOME_ENV = "FLOWOPD_HOME"
DEFAULT_HOME = "~/.flowopd"
RUN_ID_RE = re.compile(r"r[0-9a-f]{10}")  # use fullmatch: "$" would let a trailing newline through
# The source checkout (the folder holding flowopd/, flowopd_studio/, ui/ and storage/; site-packages when
# installed from a wheel): data must never be written inside it. Found from the library's package, since this
# folder installs as flowopd_studio/storage but sits at the checkout's top level.
CODE_ROOT = Path(flowopd.__file__).resolve().parents[1]


def default_home() -> Path:
    """``$FLOWOPD_HOME`` if set, else ``~/.flowopd``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def resolve_home(home: str | Path | None = None, *, create: bool = True) -> Path:
    """The absolute data folder for ``home`` (``None``: :func:`default_home`), created if missing.

    Raises:
        UnsafePath: ``home`` lies inside the source checkout (data would end up in the code tree).
    """
    path = (Path(home).expanduser() if home else default_home()).resolve()
    if (CODE_ROOT / "pyproject.toml").is_file() and path.is_relative_to(CODE_ROOT):
        raise UnsafePath(f"data folder {path} is inside the code tree {CODE_ROOT}: pass --home (or set "
                         f"{HOME_ENV}) to a folder outside it, e.g. the default {DEFAULT_HOME}")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def new_run_id() -> str:
    """A fresh run id: ``r`` + 10 hex digits of a random uuid (e.g. ``r3f9c0a1b2d``)."""
    return "r" + uuid.uuid4().hex[:10]


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it has the generated shape, else raise :class:`InvalidRunId`.

    >>> check_run_id("r0123456789")
    'r0123456789'
    >>> check_run_id("../etc")
    Traceback (most recent call last):
    ...
    flowopd_studio.storage.errors.InvalidRunId: '../etc' is not a run id (r + 10 hex digits): copy one from ...
    """
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise InvalidRunId(f"{run_id!r} is not a run id (r + 10 hex digits): copy one from `flowopd runs list`")
    return run_id


def inside(home: Path, *parts: str | Path) -> Path:
    """``home / parts...`` resolved, proven to stay inside ``home``.

    Raises:
        UnsafePath: a part is absolute, or the resolved path (after ``..`` and symlinks) leaves ``home``.
    """
    root = home.resolve()
    for part in parts:
        if Path(part).is_absolute():
            raise UnsafePath(f"absolute path {str(part)!r} is not allowed here: give a name inside {root}")
    path = root.joinpath(*parts).resolve()
    if not path.is_relative_to(root):
        raise UnsafePath(f"path {'/'.join(map(str, parts))!r} leaves the data folder {root}: use a plain name")
    return path


def run_dir(home: Path, run_id: str) -> Path:
    """The folder of run ``run_id`` (not created)."""
    return inside(home, RUNS_DIR, check_run_id(run_id))


def relative(home: Path, path: Path) -> str:
    """``path`` (inside ``home``) as a POSIX path relative to ``home``, the form stored in the database."""
    root, resolved = home.resolve(), Path(path).resolve()
    if not resolved.is_relative_to(root):
        raise UnsafePath(f"{resolved} is outside the data folder {root}: files of runs must live inside it")
    return resolved.relative_to(root).as_posix()
