"""The worker: executes one run in its own process. ``python -m flowopd_studio.storage.worker --home H --run-id ID``.

:func:`.queue.tick` starts it detached (own session, stdout and stderr into the run's
``worker.log``) after marking the run running. It reads the run's frozen config from the store, runs
the stage, and records how the run ended: ``finished``, ``stopped`` (a stop command or SIGTERM/SIGINT,
after a checkpoint) or ``failed`` (any exception: its type and first line; the traceback is in the log). Then it ticks
the queue so the next queued run starts even when no app is open.

Exit status: 0 finished or stopped, 1 failed, 3 the run was not claimed for this worker, 4 the run was
taken away while running (marked interrupted or deleted), 5 the end could not be recorded.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from .errors import RunTakenOver, StoreError
from .notify import TIMEOUT_S, notify_end
from .queue import tick
from .reporter import Heartbeat, Reporter
from .stages import StopStage, get_stage
from .store import Store

log = logging.getLogger("flowopd_studio.storage.worker")


def one_line_error(err: BaseException, run_id: str, limit: int = 500) -> str:
    """The run's ``error``: the exception's type and the first line of its message; the traceback is in the
    run's log.

    >>> print(one_line_error(ValueError("lr=-1 is invalid: use a positive number\\nmore"), "r0123456789"))
    ValueError: lr=-1 is invalid: use a positive number (traceback: flowopd runs logs r0123456789)
    """
    first = (str(err).strip().splitlines() or [""])[0]
    first = first if len(first) <= limit else first[:limit - 3] + "..."
    return f"{type(err).__name__}: {first} (traceback: flowopd runs logs {run_id})"


def _run_stage(store: Store, reporter: Reporter) -> tuple[str, str | None]:
    """Run the stage; returns (status, error text)."""
    run = store.get_run(reporter.run_id)
    try:
        status = get_stage(run.stage).run(run.config, reporter.run_dir, reporter)
    except StopStage:
        status = "stopped"
    except RunTakenOver:
        raise
    except Exception as err:
        log.exception("run %s failed at step %d", run.id, reporter.step)
        for handler in logging.getLogger().handlers:
            handler.flush()
        try:
            reporter.flush()  # keep what was measured (a resume drops what lies past the checkpoint)
        except StoreError as flush_err:
            log.warning("could not write the last metrics: %s", flush_err)
        return "failed", one_line_error(err, run.id)
    if status not in ("finished", "stopped"):
        return "failed", f"stage {run.stage} returned {status!r} instead of 'finished' or 'stopped' (a bug)"
    reporter.flush()
    return status, None


def execute(home: str | Path, run_id: str, *, handle_signals: bool = False) -> int:
    """Execute run ``run_id`` (already marked running by the queue) in this process; returns the exit status."""
    pid = os.getpid()
    store = Store(home)
    try:
        try:
            run = store.get_run(run_id)
        except StoreError as err:
            log.error("%s", err)
            return 3
        if run.status != "running" or not store.set_pid(run_id, pid):
            log.error("run %s is %s under pid %s, not claimed for this worker (pid %d): exiting", run_id,
                      run.status, run.pid, pid)
            return 3
        log.info("worker %d runs %s (stage %s, attempt %d)", pid, run_id, run.stage, run.attempts)
        reporter = Reporter(store, run, pid)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: reporter.request_stop())
        beat = Heartbeat(store.home, reporter)
        beat.start()
        try:
            status, error = _run_stage(store, reporter)
        except RunTakenOver as err:
            log.warning("%s", err)
            return 4
        finally:
            beat.stop()
        try:
            if not store.finish(run_id, pid, status, error):
                log.warning("run %s was taken away before it could be marked %s", run_id, status)
                return 4
        except StoreError as err:
            log.error("could not record that run %s %s: %s", run_id, status, err)
            return 5
        log.info("run %s %s at step %d (%d metric rows written)", run_id, status, reporter.step,
                 reporter.rows_written)
        sending = notify_end(store, run_id)  # a daemon thread: one try, a timeout, never the exit status
        if sending is not None:
            sending.join(TIMEOUT_S + 1)
        try:
            tick(store)
        except Exception:  # the run itself is recorded; a failed tick must not change its exit status
            log.exception("could not start the next queued run")
        return 0 if status in ("finished", "stopped") else 1
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowopd_studio.storage.worker",
                                     description="Execute one queued run (started by the queue; you rarely call "
                                                 "this yourself).")
    parser.add_argument("--home", required=True, help="the data folder holding flowopd.db")
    parser.add_argument("--run-id", required=True, help="the run to execute")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return execute(args.home, args.run_id, handle_signals=True)


if __name__ == "__main__":
    sys.exit(main())
