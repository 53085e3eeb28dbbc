"""Opening the SQLite file and its schema: WAL, busy timeout, foreign keys, versioned migrations.

Several processes share one database file: the app, the CLI and one worker per running run. WAL lets
readers run beside the single writer, ``busy_timeout`` makes a writer wait for the lock instead of
failing with "database is locked", and every multi-statement write opens with ``BEGIN IMMEDIATE`` (see
:func:`transaction`) so it takes the write lock up front, where the busy timeout applies, rather than
upgrading a read lock half way, which SQLite refuses at once with SQLITE_BUSY.

Migrations are plain functions in :data:`MIGRATIONS`; the database remembers how many it has applied
(table ``schema_version``). Each pending one runs once, inside the same immediate transaction, so two
processes opening a fresh database at the same moment cannot both apply it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlite_utils import Database

from .errors import StoreError

log = logging.getLogger(__name__)
BUSY_TIMEOUT_MS = 30_000
STATUSES = ("queued", "running", "finished", "failed", "stopped", "interrupted")
ARTIFACT_KINDS = ("checkpoint", "adapter", "export", "report")
COMMAND_KINDS = ("stop", "sample", "checkpoint")


def connect(path: Path) -> Database:
    """Open (creating if needed) the store at ``path`` with WAL, busy timeout and foreign keys, migrated.

    Raises:
        StoreError: the file is not an SQLite database, or cannot be opened or migrated.
    """
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a power cut may lose the last commit only
        db = Database(conn)
        migrate(db)
    except sqlite3.DatabaseError as err:
        raise StoreError(f"cannot open the run store {path} ({err}): if it is not a flowopd database, move it "
                         "away or pass another --home") from None
    return db


@contextlib.contextmanager
def transaction(db: Database) -> Iterator[Database]:
    """A write transaction that takes the write lock at once (``BEGIN IMMEDIATE``); nests as a savepoint."""
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    else:
        try:
            db.conn.execute("COMMIT")
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise


def _v1_initial(db: Database) -> None:
    """The first schema: runs and what hangs off them, registered models and teachers, settings."""
    statuses = ", ".join(f"'{s}'" for s in STATUSES)
    kinds = ", ".join(f"'{k}'" for k in ARTIFACT_KINDS)
    commands = ", ".join(f"'{k}'" for k in COMMAND_KINDS)
    db.executescript(f"""
    CREATE TABLE runs (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, stage TEXT NOT NULL, config TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ({statuses})),
        created_at REAL NOT NULL, started_at REAL, ended_at REAL, pid INTEGER, heartbeat REAL,
        device TEXT, error TEXT, log_path TEXT NOT NULL, step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER,
        resume_step INTEGER, attempts INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX runs_status ON runs (status, created_at);
    CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE, step INTEGER NOT NULL,
        name TEXT NOT NULL, value REAL, time REAL NOT NULL);
    CREATE UNIQUE INDEX metrics_key ON metrics (run_id, name, step);
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step INTEGER NOT NULL, prompt TEXT NOT NULL, seed INTEGER NOT NULL, path TEXT NOT NULL, scores TEXT,
        created_at REAL NOT NULL);
    CREATE INDEX samples_run ON samples (run_id, step);
    CREATE TABLE artifacts (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ({kinds})), path TEXT NOT NULL, step INTEGER, created_at REAL NOT NULL);
    CREATE UNIQUE INDEX artifacts_path ON artifacts (run_id, path);
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ({commands})), created_at REAL NOT NULL, handled_at REAL);
    CREATE INDEX commands_pending ON commands (run_id, handled_at);
    CREATE TABLE base_models (
        name TEXT PRIMARY KEY, path TEXT NOT NULL, backend TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE TABLE teachers (
        name TEXT PRIMARY KEY, task TEXT NOT NULL, reward TEXT NOT NULL, path TEXT NOT NULL,
        base_model TEXT REFERENCES base_models (name), source_run TEXT REFERENCES runs (id),
        created_at REAL NOT NULL);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """)


def _v2_progress(db: Database) -> None:
    """A run's progress line and ETA (the event protocol's ``on_progress``), and where it runs: ``worker``
    (a background process of the queue) or ``cli`` (a foreground command with ``--record``)."""
    for column in ("eta_s REAL", "progress TEXT", "origin TEXT NOT NULL DEFAULT 'worker'"):
        db.execute(f"ALTER TABLE runs ADD COLUMN {column}")  # execute, not executescript: that would commit


def _v3_teachers(db: Database) -> None:
    """What the app shows of a teacher: its algorithm and config snapshot, where it comes from (``run``: trained
    here, ``import``: a LoRA folder brought in, ``builtin``: shipped), its scores (JSON task -> value) and the
    eval run that measured them."""
    for column in ("algorithm TEXT", "config TEXT", "scores TEXT", "source TEXT NOT NULL DEFAULT 'run'",
                   "eval_run TEXT REFERENCES runs (id) ON DELETE SET NULL"):
        db.execute(f"ALTER TABLE teachers ADD COLUMN {column}")


# Append new migrations; never edit or reorder applied ones. Each gets the Database inside a transaction.
MIGRATIONS: list[Callable[[Database], None]] = [_v1_initial, _v2_progress, _v3_teachers]


def schema_version(db: Database) -> int:
    """How many migrations this database has applied (0 for a fresh file)."""
    if not db["schema_version"].exists():
        return 0
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(db: Database) -> int:
    """Apply pending migrations, each exactly once, in one immediate transaction; returns the version.

    Raises:
        StoreError: the database was written by a newer flowopd (more migrations than this code knows).
    """
    if schema_version(db) == len(MIGRATIONS):
        return len(MIGRATIONS)  # the common case: no write lock needed
    with transaction(db):
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = schema_version(db)  # re-read under the lock: another process may have migrated meanwhile
        if version > len(MIGRATIONS):
            raise StoreError(f"the run store has schema version {version} but this flowopd knows only "
                             f"{len(MIGRATIONS)}: upgrade flowopd, or pass another --home")
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            log.debug("applying store migration %d (%s)", number, migration.__name__)  # routine: not for the user
            migration(db)
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version (version) VALUES (?)", [len(MIGRATIONS)])
    return len(MIGRATIONS)


def integrity_check(db: Database) -> str:
    """``PRAGMA integrity_check``: ``"ok"`` for a sound database file, else SQLite's list of problems."""
    return "\n".join(row[0] for row in db.execute("PRAGMA integrity_check").fetchall())
