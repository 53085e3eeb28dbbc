"""The run store: the only module that writes SQL. The app, the CLI and the workers all go through it.

Status changes are conditional updates (``... WHERE status = 'running' AND pid = ?``), so a worker
that lost its run (marked interrupted, deleted) cannot overwrite what happened since: it sees
``False`` and exits. Timestamps are Unix seconds (float); stored paths are relative to the data folder.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
from collections.abc import Collection, Iterator
from pathlib import Path

from .db import ARTIFACT_KINDS, COMMAND_KINDS, connect, integrity_check, transaction
from .errors import InvalidRunState, RunNotFound, StoreError, StoreWriteError
from .paths import DB_FILE, LOG_FILE, RUNS_DIR, check_run_id, inside, new_run_id, relative, resolve_home, run_dir
from .records import RESUMABLE, Run


class Store:
    """The store of one data folder: ``Store(home)`` opens (and migrates) ``home/flowopd.db``."""

    def __init__(self, home: str | Path | None = None):
        self.home = resolve_home(home)
        self.db_path = self.home / DB_FILE
        self.db = connect(self.db_path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paths -------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        """The folder of ``run_id`` (validated, inside the data folder)."""
        return run_dir(self.home, run_id)

    def path(self, stored: str) -> Path:
        """The absolute path of a stored (home-relative) path, refusing anything outside the data folder."""
        return inside(self.home, stored)

    def relative(self, path: Path) -> str:
        return relative(self.home, path)

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[None]:
        """One immediate transaction; SQLite failures become :class:`StoreWriteError` naming the fix."""
        try:
            with transaction(self.db):
                yield
        except sqlite3.IntegrityError as err:
            raise StoreError(f"writing {what} to {self.db_path} broke a rule of the schema ({err})") from err
        except sqlite3.Error as err:
            raise StoreWriteError(f"could not write {what} to {self.db_path} ({err}): free disk space or fix "
                                  f"the permissions of {self.home}, then resume the run") from err

    def _update(self, run_id: str, where: str, args: list, **fields: object) -> bool:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._write(f"run {run_id}"):
            cur = self.db.execute(f"UPDATE runs SET {sets} WHERE id = ? AND {where}",
                                  [*fields.values(), run_id, *args])
        return cur.rowcount == 1

    # -- runs --------------------------------------------------------------------------------------
    def create_run(self, stage: str, config: dict, name: str | None = None) -> Run:
        """Insert a queued run with the frozen ``config``; its folder gets ``config.json`` too."""
        run_id = new_run_id()
        folder = self.run_dir(run_id)
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"stage": stage, "config": config}, indent=1) + "\n")
        row = {"id": run_id, "name": name or f"{stage}-{run_id[1:5]}", "stage": stage,
               "config": json.dumps(config, sort_keys=True), "status": "queued", "created_at": time.time(),
               "log_path": self.relative(folder / LOG_FILE)}
        try:
            with self._write(f"new run {run_id}"):
                self.db["runs"].insert(row)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return self.get_run(run_id)

    def start_foreground(self, stage: str, config: dict, pid: int, name: str | None = None,
                         device: str | None = None) -> Run:
        """Insert a run already running under ``pid`` (a foreground command with ``--record``, origin ``cli``)."""
        run = self.create_run(stage, config, name)
        now = time.time()
        with self._write(f"run {run.id}"):
            self.db.execute("UPDATE runs SET status = 'running', pid = ?, started_at = ?, heartbeat = ?, "
                            "attempts = 1, origin = 'cli', device = ? WHERE id = ?", [pid, now, now, device, run.id])
        return self.get_run(run.id)

    def get_run(self, run_id: str) -> Run:
        rows = list(self.db.query("SELECT * FROM runs WHERE id = ?", [check_run_id(run_id)]))
        if not rows:
            raise RunNotFound(f"no run {run_id} in {self.db_path}: see `flowopd runs list`")
        return Run.from_row(rows[0])

    def list_runs(self, status: str | None = None) -> list[Run]:
        """Runs, newest first (only those with ``status`` if given)."""
        where, args = ("WHERE status = ?", [status]) if status else ("", [])
        return [Run.from_row(r) for r in self.db.query(f"SELECT * FROM runs {where} ORDER BY created_at DESC, "
                                                       "rowid DESC", args)]

    def claim_next(self, max_running: int, skip: Collection[str] = ()) -> Run | None:
        """Mark the oldest queued run not in ``skip`` running (no pid yet) if fewer than ``max_running`` run;
        else None."""
        skip = sorted(skip)
        with self._write("run status"):
            running = self.db.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
            row = self.db.execute(f"SELECT id FROM runs WHERE status = 'queued' AND id NOT IN "
                                  f"({', '.join('?' * len(skip))}) ORDER BY created_at, rowid LIMIT 1",
                                  skip).fetchone()
            if running >= max_running or row is None:
                return None
            now = time.time()
            # A resumed run keeps its first start: `started` is when the run began, the heartbeat is this attempt's.
            self.db.execute("UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?), heartbeat = ?, "
                            "pid = NULL, ended_at = NULL, error = NULL, attempts = attempts + 1 WHERE id = ?",
                            [now, now, row[0]])
        return self.get_run(row[0])

    def set_pid(self, run_id: str, pid: int) -> bool:
        """Record the worker's pid on a running run that has none yet (or already this one)."""
        return self._update(run_id, "status = 'running' AND (pid IS NULL OR pid = ?)", [pid], pid=pid,
                            heartbeat=time.time())

    def update_worker(self, run_id: str, pid: int, **fields: object) -> bool:
        """Worker-side update (device, total_steps, step...); ``False`` if the run is no longer this pid's."""
        return self._update(run_id, "status = 'running' AND pid = ?", [pid], heartbeat=time.time(), **fields)

    def finish(self, run_id: str, pid: int | None, status: str, error: str | None = None) -> bool:
        """running → ``status`` (finished, failed or stopped) for the worker ``pid`` (None: never started)."""
        if status not in ("finished", "failed", "stopped"):
            raise ValueError(f"a worker cannot end a run as {status!r}: use finished, failed or stopped")
        return self._update(run_id, "status = 'running' AND pid IS ?", [pid], status=status, error=error,
                            ended_at=time.time(), heartbeat=time.time())

    def mark_interrupted(self, run_id: str, pid: int | None, error: str) -> bool:
        """running → interrupted, if the run still belongs to ``pid`` (the dead worker's)."""
        return self._update(run_id, "status = 'running' AND pid IS ?", [pid], status="interrupted",
                            error=error, ended_at=time.time())

    def stop_queued(self, run_id: str) -> bool:
        """queued → stopped (it never started); ``False`` if it is not queued any more."""
        return self._update(run_id, "status = 'queued'", [], status="stopped", ended_at=time.time(),
                            error="stopped by the user before it started")

    def requeue(self, run_id: str, resume_step: int) -> Run:
        """stopped/interrupted/failed → queued, dropping metrics and samples past ``resume_step``."""
        run = self.get_run(run_id)
        with self._write(f"resume of run {run_id}"):
            cur = self.db.execute(
                f"UPDATE runs SET status = 'queued', resume_step = ?, step = ?, pid = NULL, error = NULL, "
                f"ended_at = NULL WHERE id = ? AND status IN {RESUMABLE}", [resume_step, resume_step, run_id])
            if cur.rowcount != 1:
                raise InvalidRunState(f"run {run_id} is {run.status}: only a stopped, interrupted or failed run "
                                      "can be resumed")
            self.truncate(run_id, resume_step)
            self.db.execute("UPDATE commands SET handled_at = ? WHERE run_id = ? AND handled_at IS NULL",
                            [time.time(), run_id])
        return self.get_run(run_id)

    def delete_run(self, run_id: str) -> None:
        """Remove the run's rows (metrics, samples, artifacts, commands too) and its folder; nothing else."""
        run = self.get_run(run_id)
        if run.status == "running":
            raise InvalidRunState(f"run {run_id} is running: stop it first (`flowopd runs stop {run_id}`)")
        teachers = [r["name"] for r in self.db.query("SELECT name FROM teachers WHERE source_run = ?", [run_id])]
        if teachers:
            raise InvalidRunState(f"run {run_id} produced teacher(s) {teachers}: remove them before the run")
        folder = self.run_dir(run_id)
        trash = inside(self.home, RUNS_DIR, f".deleting-{run_id}")
        shutil.rmtree(trash, ignore_errors=True)  # left over from an earlier deletion that crashed
        if folder.exists():
            folder.rename(trash)  # atomic: the folder is either whole or gone from runs/
        try:
            with self._write(f"deletion of run {run_id}"):
                if self.db.execute("DELETE FROM runs WHERE id = ? AND status != 'running'", [run_id]).rowcount != 1:
                    raise InvalidRunState(f"run {run_id} started meanwhile: stop it first")
        except BaseException:
            if trash.exists():
                trash.rename(folder)
            raise
        shutil.rmtree(trash, ignore_errors=True)

    # -- metrics, samples, artifacts -----------------------------------------------------------------
    def add_metrics(self, run_id: str, rows: list[tuple[int, str, float, float]]) -> None:
        """Insert ``(step, name, value, time)`` rows in one transaction."""
        if rows:
            with self._write(f"{len(rows)} metric rows of run {run_id}"):
                self.db["metrics"].insert_all(
                    {"run_id": run_id, "step": s, "name": n, "value": v, "time": t} for s, n, v, t in rows)

    def metrics(self, run_id: str, name: str | None = None, since_step: int = -1) -> list[dict]:
        """Rows ``{step, name, value, time}`` with step > ``since_step``, by name then step."""
        sql = "SELECT step, name, value, time FROM metrics WHERE run_id = ? AND step > ?"
        args: list = [check_run_id(run_id), since_step]
        if name:
            sql, args = sql + " AND name = ?", [*args, name]
        return list(self.db.query(sql + " ORDER BY name, step", args))

    def latest_metrics(self, run_id: str) -> dict[str, float]:
        """The last value of every metric of the run."""
        return {r["name"]: r["value"] for r in self.db.query(
            "SELECT name, value FROM metrics m WHERE run_id = ? AND step = (SELECT max(step) FROM metrics "
            "WHERE run_id = m.run_id AND name = m.name) ORDER BY name", [check_run_id(run_id)])}

    def metric_names(self, run_ids: list[str]) -> list[str]:
        """The distinct metric names the runs have rows for, sorted (one index scan per run)."""
        names: set[str] = set()
        for run_id in run_ids:
            names.update(r[0] for r in self.db.execute("SELECT DISTINCT name FROM metrics WHERE run_id = ?",
                                                       [check_run_id(run_id)]).fetchall())
        return sorted(names)

    def metric_series(self, run_ids: list[str], names: list[str], max_points: int = 2000,
                      since_step: int = -1) -> list[dict]:
        """Rows ``{run_id, name, step, value}`` of each (run, name) series, downsampled in the query.

        A series of ``n`` rows (step > ``since_step``) keeps its first row, every ``ceil(n / (max_points - 1))``-th
        row by step after it, and always its last (so a live plot ends at the newest value): at most
        ``max_points`` rows per series. One aggregate query counts the series (index only), then each series
        is read once: evenly spaced steps are strided by step arithmetic, others by row number (a window
        function). Ordered by run, name, step.
        """
        if max_points < 2:
            raise ValueError(f"max_points={max_points} is too small: keep at least 2 points per series")
        if not run_ids or not names:
            return []
        runs, keys = ",".join("?" * len(run_ids)), ",".join("?" * len(names))
        where = f"run_id IN ({runs}) AND name IN ({keys}) AND step > ?"
        args = [*(check_run_id(r) for r in run_ids), *names, since_step]
        counts = self.db.execute(f"SELECT run_id, name, count(*), min(step), max(step) FROM metrics WHERE {where} "
                                 "GROUP BY run_id, name ORDER BY run_id, name", args).fetchall()
        out: list[dict] = []
        for run_id, name, n, first, last in counts:
            stride = -(-n // (max_points - 1))  # ceil
            if stride == 1:
                sql, extra = "SELECT step, value FROM metrics WHERE run_id = ? AND name = ? AND step > ?", []
            elif (last - first) % (n - 1) == 0:  # evenly spaced steps (the usual log): stride by step, index only
                sql = ("SELECT step, value FROM metrics WHERE run_id = ? AND name = ? AND step > ? "
                       "AND ((step - ?) % ? = 0 OR step = ?)")
                extra = [first, stride * (last - first) // (n - 1), last]
            else:  # uneven steps: number the rows
                sql = ("SELECT step, value FROM (SELECT step, value, ROW_NUMBER() OVER (ORDER BY step) AS i "
                       "FROM metrics WHERE run_id = ? AND name = ? AND step > ?) WHERE (i - 1) % ? = 0 OR i = ?")
                extra = [stride, n]
            rows = self.db.execute(sql + " ORDER BY step", [run_id, name, since_step, *extra]).fetchall()
            out.extend({"run_id": run_id, "name": name, "step": step, "value": value} for step, value in rows)
        return out

    def truncate(self, run_id: str, after_step: int) -> None:
        """Drop metric and sample rows with step > ``after_step`` (what a resume from there redoes)."""
        with self._write(f"metrics of run {run_id}"):
            self.db.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", [run_id, after_step])
            self.db.execute("DELETE FROM samples WHERE run_id = ? AND step > ?", [run_id, after_step])

    def add_sample(self, run_id: str, step: int, prompt: str, seed: int, path: Path,
                   scores: dict | None = None) -> None:
        with self._write(f"a sample of run {run_id}"):
            self.db["samples"].insert({"run_id": run_id, "step": step, "prompt": prompt, "seed": seed,
                                       "path": self.relative(path), "created_at": time.time(),
                                       "scores": json.dumps(scores) if scores is not None else None})

    def samples(self, run_id: str) -> list[dict]:
        return list(self.db.query("SELECT * FROM samples WHERE run_id = ? ORDER BY step, id", [check_run_id(run_id)]))

    def add_artifact(self, run_id: str, kind: str, path: Path, step: int | None = None) -> None:
        """Record (or update the step of) a file or folder the run produced."""
        if kind not in ARTIFACT_KINDS:
            raise ValueError(f"artifact kind {kind!r} is unknown: use one of {ARTIFACT_KINDS}")
        with self._write(f"an artifact of run {run_id}"):
            self.db.execute("INSERT INTO artifacts (run_id, kind, path, step, created_at) VALUES (?, ?, ?, ?, ?) "
                            "ON CONFLICT (run_id, path) DO UPDATE SET kind = excluded.kind, step = excluded.step, "
                            "created_at = excluded.created_at", [run_id, kind, self.relative(path), step, time.time()])

    def artifacts(self, run_id: str) -> list[dict]:
        return list(self.db.query("SELECT kind, path, step, created_at FROM artifacts WHERE run_id = ? ORDER BY id",
                                  [check_run_id(run_id)]))

    # -- commands ----------------------------------------------------------------------------------
    def send_command(self, run_id: str, kind: str) -> None:
        """Queue ``kind`` (stop, sample, checkpoint) for the running worker of ``run_id``."""
        if kind not in COMMAND_KINDS:
            raise ValueError(f"command {kind!r} is unknown: use one of {COMMAND_KINDS}")
        run = self.get_run(run_id)
        if run.status != "running":
            raise InvalidRunState(f"run {run_id} is {run.status}, not running: there is no worker to {kind}")
        with self._write(f"a {kind} command for run {run_id}"):
            self.db["commands"].insert({"run_id": run_id, "kind": kind, "created_at": time.time()})

    def stopping_runs(self) -> set[str]:
        """Ids of the running runs a stop was asked of since they started (the worker ends them at its next poll,
        after a checkpoint): what the app shows as stopping."""
        rows = self.db.execute(
            "SELECT DISTINCT c.run_id FROM commands c JOIN runs r ON r.id = c.run_id WHERE c.kind = 'stop' "
            "AND r.status = 'running' AND c.created_at >= COALESCE(r.started_at, 0)").fetchall()
        return {r[0] for r in rows}

    def take_commands(self, run_id: str) -> list[str]:
        """Pending commands of the run, oldest first, marked handled (a cheap read when there are none)."""
        if not self.db.execute("SELECT 1 FROM commands WHERE run_id = ? AND handled_at IS NULL LIMIT 1",
                               [run_id]).fetchone():
            return []
        with self._write(f"commands of run {run_id}"):
            rows = self.db.execute("SELECT id, kind FROM commands WHERE run_id = ? AND handled_at IS NULL "
                                   "ORDER BY id", [run_id]).fetchall()
            self.db.execute(f"UPDATE commands SET handled_at = ? WHERE id IN ({','.join('?' * len(rows))})",
                            [time.time(), *(r[0] for r in rows)])
        return [r[1] for r in rows]

    # -- registry of models, teachers, settings ----------------------------------------------------
    def add_base_model(self, name: str, path: str, backend: str) -> None:
        with self._write(f"base model {name}"):
            self.db["base_models"].upsert({"name": name, "path": path, "backend": backend,
                                           "created_at": time.time()}, pk="name")

    def base_models(self) -> list[dict]:
        return list(self.db.query("SELECT * FROM base_models ORDER BY name"))

    def add_teacher(self, name: str, task: str, reward: str, path: str, *, base_model: str | None = None,
                    source_run: str | None = None, algorithm: str | None = None, config: dict | None = None,
                    source: str = "run", eval_run: str | None = None) -> None:
        """Register a teacher adapter (its task, reward and the run that trained it; ``source`` run, import or
        builtin; the algorithm and config snapshot; the eval run that scores it)."""
        if source not in ("run", "import", "builtin"):
            raise ValueError(f"teacher source {source!r} is unknown: use run, import or builtin")
        with self._write(f"teacher {name}"):
            self.db["teachers"].upsert({"name": name, "task": task, "reward": reward, "path": path,
                                        "base_model": base_model, "source_run": source_run,
                                        "algorithm": algorithm, "source": source, "eval_run": eval_run,
                                        "config": json.dumps(config, sort_keys=True) if config is not None else None,
                                        "created_at": time.time()}, pk="name")

    def teachers(self) -> list[dict]:
        return list(self.db.query("SELECT * FROM teachers ORDER BY name"))

    def teacher(self, name: str) -> dict | None:
        """The teachers row of ``name``, or None."""
        rows = list(self.db.query("SELECT * FROM teachers WHERE name = ?", [name]))
        return rows[0] if rows else None

    def update_teacher(self, name: str, *, scores: dict | None = None, eval_run: str | None = None) -> None:
        """Set a teacher's scores (task -> value) and/or the eval run that measures them."""
        fields = {k: v for k, v in (("scores", json.dumps(scores, sort_keys=True) if scores is not None else None),
                                    ("eval_run", eval_run)) if v is not None}
        if fields:
            with self._write(f"teacher {name}"):
                self.db.execute(f"UPDATE teachers SET {', '.join(f'{k} = ?' for k in fields)} WHERE name = ?",
                                [*fields.values(), name])

    def remove_teacher(self, name: str) -> bool:
        """Unregister a teacher (its adapter folder and runs stay); ``False`` if there was none."""
        with self._write(f"teacher {name}"):
            return self.db.execute("DELETE FROM teachers WHERE name = ?", [name]).rowcount == 1

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return row[0] if row else default

    def set_setting(self, key: str, value: object) -> None:
        with self._write(f"setting {key}"):
            self.db["settings"].upsert({"key": key, "value": str(value)}, pk="key")

    def integrity_check(self) -> str:
        """``"ok"`` when SQLite finds the database file sound."""
        try:
            return integrity_check(self.db)
        except sqlite3.Error as err:
            raise StoreError(f"integrity check of {self.db_path} failed to run ({err})") from err
