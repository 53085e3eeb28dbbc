"""The store's side of the event protocol (:mod:`flowopd.events`), written once for every stage.

:class:`StoreCallback` turns a stage's events into the run's rows: metrics, samples (PNG files under the
run folder), artifacts, progress (step, total, ETA, a line) and commands. ``should_stop`` polls the run's
commands: *stop* (or SIGTERM) ends the stage after its checkpoint; *checkpoint now* and *sample now* also
stop it (the stage saves), and the worker's stage restarts it at once from that checkpoint, an exact
resume in-process, after sampling for *sample now* (``pause`` and ``want_sample`` tell it which).

:func:`record` runs a foreground command (``flowopd train ... --record``) as a run of the store: the run is
created running under this process, heartbeats, shows in ``flowopd runs list`` and the app as it trains,
and ends finished, stopped or failed with the command. Its adapter and reports are copied into the run
folder (the store keeps and serves only files inside its data folder); checkpoints stay in ``--out``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from flowopd.events import Progress, Sample, StopRequested, TrainingCallback, numeric
from flowopd.layout import ADAPTER_DIR, REPORTS_DIR

from .reporter import Heartbeat, Reporter
from .store import Store

log = logging.getLogger(__name__)
COPIED_KINDS = ("adapter", "report", "export")
FOREGROUND_FILE = "foreground.json"  # a --record run: its --out, command line and extras


class StoreCallback(TrainingCallback):
    """One run's events into the store through its :class:`Reporter`.

    Args:
        reporter: the run's reporter (owned by this worker's pid).
        flush_metrics: write every step's metrics at once (a checkpoint that follows must not be ahead of
            the stored metrics); False leaves flushing to the reporter's timer and to :meth:`flush`.
        pausable: the stage restarts itself after *checkpoint now* / *sample now* (the worker's trainers and
            pretraining); elsewhere those commands are ignored, not taken for a stop.
    """

    def __init__(self, reporter: Reporter, *, flush_metrics: bool = True, pausable: bool = False):
        self.reporter, self.flush_metrics, self.pausable = reporter, flush_metrics, pausable
        self.stop = self.pause = self.want_sample = False
        self.stage: str | None = None  # the run's own stage: its progress is the run's step

    def on_begin(self, stage: str, total: int | None, start_step: int = 0) -> None:
        if self.stage is None:
            self.stage = stage
        if total is not None and stage == self.stage:
            self.reporter.set_total(total)

    def on_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self.reporter.log(step, numeric(metrics), advance=False)
        if self.flush_metrics:
            self.reporter.flush()

    def on_sample(self, step: int, sample: Sample) -> None:
        self.reporter.sample(step, sample.prompt, sample.seed, sample.image, dict(sample.info))

    def on_artifact(self, step: int, kind: str, path: Path) -> None:
        path = Path(path)
        if not path.resolve().is_relative_to(self.reporter.store.home.resolve()):
            path = self._copy_in(kind, path)  # a --record command writes where its --out says
            if path is None:
                return
        self.reporter.artifact(kind, path, step)

    def _copy_in(self, kind: str, path: Path) -> Path | None:
        """A copy inside the run folder of an adapter or report written outside the data folder (the store
        serves and reuses only files inside it); None for checkpoints, which stay where the command keeps them."""
        if kind not in COPIED_KINDS or not path.exists():
            log.debug("%s %s is outside the data folder: not recorded", kind, path)
            return None
        target = self.reporter.run_dir / (ADAPTER_DIR if kind == "adapter" else REPORTS_DIR) / (
            "" if kind == "adapter" else path.name)
        if path.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(path, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        return target

    def on_progress(self, progress: Progress) -> None:
        line = f"{progress.stage}: {progress.message}" if progress.message else progress.stage
        if progress.stage == self.stage or self.stage is None:
            self.reporter.progress(progress.step, progress.total, progress.eta_s, line)
        else:  # a sub-stage (reproduce): its line shows; the run's step and ETA stay the outer stage's
            self.reporter.progress(self.reporter.step, None, self.reporter.eta_s, line)

    def should_stop(self) -> bool:
        self._poll()
        if self.stop or self.pause:
            self.reporter.flush()
            return True
        return False

    def stop_now(self) -> bool:
        """A *stop* (or SIGTERM) is pending: a trainer stops at its next optimizer step instead of its epoch's end
        (a pause waits for the epoch: its restart continues from the checkpoint)."""
        self._poll()
        return self.stop

    def _poll(self) -> None:
        for kind in self.reporter.commands():
            if kind == "stop":
                self.stop = True
            elif self.pausable:
                self.pause = True
                self.want_sample |= kind == "sample"
            else:
                log.info("run %s: %r now is not available for this stage; ignored", self.reporter.run_id, kind)

    def resumed(self) -> None:
        """After a pause: train on (the stage restarted from its checkpoint)."""
        self.pause = self.want_sample = False

    def flush(self) -> None:
        self.reporter.flush()


class _LogToRunFile(logging.FileHandler):
    """The command's log lines also go to the run's log file (``flowopd runs logs``, the app's Logs)."""


def _device() -> str:
    """Where a foreground command trains: the one the library picks by default (the command loads torch anyway)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def record(stage: str, config: dict, *, home: str | Path | None = None, name: str | None = None,
           out: str | Path | None = None, extra: dict | None = None) -> Iterator[StoreCallback]:
    """Record a foreground command as a run of the store at ``home``; yields the run's :class:`StoreCallback`.

    The run's frozen config is ``config`` (the stage's, so that a resume from the store can run it); where the
    command writes (``out``), its command line and ``extra`` go to the run folder's ``foreground.json``. It
    ends ``finished`` when
    the block returns, ``stopped`` when the callback was asked to stop, and ``failed`` (one-line error; the
    traceback in the run's log) when the block raises.
    """
    store = Store(home)
    run = store.start_foreground(stage, config, os.getpid(), name=name, device=_device())
    where = {"out": str(Path(out).resolve()) if out is not None else None, "argv": sys.argv, **(extra or {})}
    # argv: the command root passes the command's own words in extra (sys.argv is the interpreter's)
    (store.run_dir(run.id) / FOREGROUND_FILE).write_text(json.dumps(where, indent=1) + "\n")
    reporter = Reporter(store, run, os.getpid())
    with open(store.path(run.log_path), "a") as head:  # whatever the log level, the log says what ran
        head.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} foreground {stage} run (--record), pid {os.getpid()}, "
                   f"out {where['out'] or '-'}\n")
    handler = _LogToRunFile(store.path(run.log_path))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    beat = Heartbeat(store.home, reporter)
    beat.start()
    callback = StoreCallback(reporter)
    log.info("recording %s as run %s in %s", stage, run.id, store.home)
    status, error = "finished", None
    try:
        yield callback
        status = "stopped" if callback.stop else "finished"
    except (KeyboardInterrupt, StopRequested) as err:  # Ctrl-C, or `runs stop` of a stage without checkpoints
        status = "stopped"
        log.info("run %s stopped: %s", run.id, str(err) or type(err).__name__)
        raise
    except BaseException as err:
        status, error = "failed", f"{type(err).__name__}: {err}".splitlines()[0][:500]
        log.error("run %s failed:\n%s", run.id, traceback.format_exc())
        raise
    finally:
        beat.stop()
        try:
            reporter.flush()
        except Exception as flush_err:  # the command's own outcome matters more than its last rows
            log.warning("could not write the last metrics of run %s: %s", run.id, flush_err)
        store.finish(run.id, os.getpid(), status, error)
        logging.getLogger().removeHandler(handler)
        handler.close()
        store.close()
        print(f"recorded as run {run.id} ({status}) in {store.home}")
