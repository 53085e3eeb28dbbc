"""What a stage function sees of the store while it trains: :class:`Reporter` (and the heartbeat thread).

A stage calls ``reporter.log(step, {...})`` after each step (rows are buffered and written every
``flush_every_s`` seconds or ``max_rows`` rows, and always before a checkpoint), ``reporter.commands()``
every step (stop / sample / checkpoint requests from the app or CLI), and ``reporter.sample(...)`` /
``reporter.artifact(...)`` for files it writes. A separate thread heartbeats every ``HEARTBEAT_S`` so a
long step never looks like a dead worker.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from flowopd.layout import samples_dir

from .errors import RunTakenOver, StoreError
from .records import Run
from .store import Store

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0
FLUSH_EVERY_S = 2.0
MAX_ROWS = 2000


class Reporter:
    """Buffered metrics, progress and command polling for one running run owned by ``pid``."""

    def __init__(self, store: Store, run: Run, pid: int, *, flush_every_s: float = FLUSH_EVERY_S,
                 max_rows: int = MAX_ROWS):
        self.store, self.run_id, self.pid = store, run.id, pid
        self.run_dir = store.run_dir(run.id)
        self.resume_step = run.resume_step or 0
        self.step = run.resume_step or 0
        self.flush_every_s, self.max_rows = flush_every_s, max_rows
        self.rows_written = 0
        self._rows: list[tuple[int, str, float, float]] = []
        self._last_flush = time.monotonic()
        self._stop_signal = False
        self._lost = False
        self._progress: dict = {}
        self._last_progress = -float("inf")

    def log(self, step: int, values: dict[str, float], *, advance: bool = True) -> None:
        """Buffer one step's metrics; flushes when the buffer is old or big enough. ``advance``: the run's
        step becomes ``step`` (False for a sub-stage's metrics, whose steps are not the run's)."""
        now = time.time()
        if advance:
            self.step = step
        self._rows.extend((step, name, float(value), now) for name, value in values.items())
        if len(self._rows) >= self.max_rows or time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Write buffered metrics and the current step (also a heartbeat).

        Raises:
            StoreWriteError: SQLite refused the write (the rows stay buffered).
            RunTakenOver: the run is no longer running under this worker's pid.
        """
        self._check_owner()
        rows, self._rows = self._rows, []
        try:
            self.store.add_metrics(self.run_id, rows)
        except StoreError:
            self._rows = rows + self._rows
            raise
        self.rows_written += len(rows)
        self._last_flush = time.monotonic()
        if not self.store.update_worker(self.run_id, self.pid, step=self.step, **self._progress):
            self._lost = True
            self._check_owner()

    def commands(self) -> list[str]:
        """Commands sent to this run since the last call (``stop``, ``sample``, ``checkpoint``)."""
        self._check_owner()
        kinds = self.store.take_commands(self.run_id)
        if self._stop_signal and "stop" not in kinds:
            kinds.append("stop")
        if kinds:
            log.info("run %s got command(s) %s at step %d", self.run_id, kinds, self.step)
        return kinds

    def request_stop(self) -> None:
        """Treat the next :meth:`commands` as containing ``stop`` (SIGTERM/SIGINT handler)."""
        self._stop_signal = True

    def lose(self) -> None:
        """Mark the run as taken away from this worker (called by the heartbeat thread)."""
        self._lost = True

    def _check_owner(self) -> None:
        if self._lost:
            raise RunTakenOver(f"run {self.run_id} is no longer running under pid {self.pid} (marked interrupted "
                               "or deleted meanwhile): this worker stops without touching it")

    def progress(self, step: int, total: int | None, eta_s: float | None, line: str) -> None:
        """Record where the run is (written at most every ``flush_every_s`` seconds, with the step)."""
        self.step = step
        self._progress = {"eta_s": eta_s, "progress": line[:200], **({"total_steps": total} if total else {})}
        if time.monotonic() - self._last_progress >= self.flush_every_s:
            self._write_progress()

    @property
    def eta_s(self) -> float | None:
        """The run's latest estimate of the seconds left (None before one)."""
        return self._progress.get("eta_s")

    def _write_progress(self) -> None:
        self._check_owner()
        self._last_progress = time.monotonic()
        if self._progress and not self.store.update_worker(self.run_id, self.pid, step=self.step,
                                                           **self._progress):
            self._lost = True
            self._check_owner()

    def set_device(self, device: str) -> None:
        self.store.update_worker(self.run_id, self.pid, device=device)

    def set_total(self, total_steps: int) -> None:
        self.store.update_worker(self.run_id, self.pid, total_steps=total_steps)

    def truncate(self, step: int) -> None:
        """Drop stored metrics and samples past ``step`` (before continuing from a checkpoint there)."""
        self._rows = [r for r in self._rows if r[0] <= step]
        self.store.truncate(self.run_id, step)
        self.step = step

    def sample(self, step: int, prompt: str, seed: int, image: Any, scores: dict | None = None) -> Path:
        """Save a PIL ``image`` under ``samples/`` and record it; returns the file."""
        folder = samples_dir(self.run_dir)
        folder.mkdir(exist_ok=True)
        path = folder / f"step{step:07d}_{sum(1 for _ in folder.iterdir()):05d}_seed{seed}.png"
        image.save(path)
        self.store.add_sample(self.run_id, step, prompt, seed, path, scores)
        return path

    def artifact(self, kind: str, path: Path, step: int | None = None) -> None:
        self.store.add_artifact(self.run_id, kind, path, step)


class Heartbeat(threading.Thread):
    """Writes ``runs.heartbeat`` every ``every_s`` seconds from its own connection, until stopped."""

    def __init__(self, home: Path, reporter: Reporter, every_s: float = HEARTBEAT_S):
        super().__init__(name=f"heartbeat-{reporter.run_id}", daemon=True)
        self.home, self.reporter, self.every_s = home, reporter, every_s
        self._done = threading.Event()

    def run(self) -> None:
        store = Store(self.home)
        try:
            while not self._done.wait(self.every_s):
                try:
                    if not store.update_worker(self.reporter.run_id, self.reporter.pid):
                        self.reporter.lose()
                        return
                except StoreError as err:  # e.g. disk full: the main loop will hit it too and fail the run
                    log.warning("heartbeat of run %s failed: %s", self.reporter.run_id, err)
        finally:
            store.close()

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join(timeout=self.every_s + 5)
