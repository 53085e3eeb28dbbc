"""The queue: submit, start workers, notice dead ones, stop and resume runs.

:func:`tick` is the scheduler's one step. It marks runs whose worker died as ``interrupted`` (pid gone,
or no heartbeat for ``stale_after`` seconds) and starts queued runs, oldest first, while fewer than
``max_concurrent`` run (setting ``max_concurrent``, default 1: one run at a time on this machine's
device). Anything may call it: the app's timer, ``flowopd runs submit|resume|tick``, and every worker
when it ends, so the queue keeps moving with no app open.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidRunState, RunNotFound
from .logs import with_log_tail
from .paths import CODE_ROOT, LOG_FILE, RUN_ID_RE, run_dir
from .records import RESUMABLE, Run
from .stages import get_stage
from .store import Store

log = logging.getLogger(__name__)
STALE_AFTER_S = 60.0  # 12 missed heartbeats (HEARTBEAT_S = 5)


@dataclass
class Tick:
    """What one :func:`tick` did: run ids started and run ids marked interrupted."""

    started: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)


def spawn_worker(home: Path, run_id: str) -> int:
    """Start ``python -m flowopd_studio.storage.worker`` for the run, detached (own session), logging to its worker.log.

    Returns the worker's pid. A thread waits for it (so it never lingers as a zombie while this process
    lives; once this process is gone the worker is adopted by init) and records a non-zero exit.
    """
    log_path = run_dir(home, run_id) / LOG_FILE
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CODE_ROOT), env.get("PYTHONPATH")) if p)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "flowopd_studio.storage.worker", "--home", str(home),
                                 "--run-id", run_id],
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(home), env=env)
    threading.Thread(target=_watch, args=(home, run_id, proc), name=f"watch-{run_id}", daemon=True).start()
    log.info("started worker %d for run %s", proc.pid, run_id)
    return proc.pid


def _watch(home: Path, run_id: str, proc: subprocess.Popen) -> None:
    """Reap the worker; if it exited non-zero without recording the run's end, mark the run failed.

    (A worker killed by a signal is left to :func:`reap`, which marks it interrupted: resumable.)
    """
    code = proc.wait()
    if code <= 0:
        return
    try:
        with Store(home) as store:
            # The worker can exit before tick() records its pid; claim the run for it first, or the
            # pid-guarded finish below would find no owner and leave the run "running".
            store.set_pid(run_id, proc.pid)
            text = with_log_tail(f"worker process {proc.pid} exited with status {code}",
                                 run_dir(home, run_id) / LOG_FILE)
            if store.finish(run_id, proc.pid, "failed", text):
                log.warning("run %s failed: its worker exited with status %d", run_id, code)
    except Exception:  # never let the watcher thread die noisily; tick() still catches the dead pid
        log.exception("could not record the exit of run %s's worker", run_id)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def dead_reason(run: Run, stale_after: float, now: float | None = None) -> str | None:
    """Why the worker of a running ``run`` counts as dead, or None if it looks alive."""
    age = (now or time.time()) - (run.heartbeat or run.started_at or run.created_at)
    if run.pid is None:
        return f"its worker never started (no pid after {age:.0f} s)" if age > stale_after else None
    if not pid_alive(run.pid):
        return f"its worker process {run.pid} is gone (killed or crashed) without recording how the run ended"
    if age > stale_after:
        return f"its worker process {run.pid} sent no heartbeat for {age:.0f} s (hung, or its pid was reused)"
    return None


def reap(store: Store, stale_after: float = STALE_AFTER_S) -> list[str]:
    """Mark running runs with a dead worker as interrupted (error: the reason and the log's last lines)."""
    marked = []
    for run in store.list_runs("running"):
        reason = dead_reason(run, stale_after)
        if reason:
            text = with_log_tail(f"interrupted: {reason}; resume it with `flowopd runs resume {run.id}`",
                                 store.path(run.log_path))
            if store.mark_interrupted(run.id, run.pid, text):
                log.warning("run %s interrupted: %s", run.id, reason)
                marked.append(run.id)
    return marked


def max_concurrent(store: Store) -> int:
    """The ``max_concurrent`` setting (default 1)."""
    value = store.get_setting("max_concurrent", "1")
    if not str(value).isdigit() or int(value) < 1:
        raise ValueError(f"setting max_concurrent is {value!r}: set a positive integer "
                         "(`flowopd runs tick --max-concurrent 1`)")
    return int(value)


def waiting_for(store: Store, run: Run) -> list[str]:
    """The runs ``run`` builds on (run ids in its config: teachers, init, model, an anchor) that have not
    finished: a queued run starts only after them, whatever ``max_concurrent`` allows."""
    ids, todo = set(), [run.config]
    while todo:
        value = todo.pop()
        if isinstance(value, dict):
            todo.extend(value.values())
        elif isinstance(value, list):
            todo.extend(value)
        elif isinstance(value, str) and RUN_ID_RE.fullmatch(value) and value != run.id:
            ids.add(value)
    waiting = []
    for run_id in sorted(ids):
        try:
            finished = store.get_run(run_id).status == "finished"
        except RunNotFound:
            finished = False
        if not finished:
            waiting.append(run_id)
    return waiting


def tick(store: Store, *, max_running: int | None = None, stale_after: float = STALE_AFTER_S,
         spawn=None) -> Tick:
    """Reap dead workers, then start queued runs while fewer than ``max_running`` run.

    ``spawn(home, run_id) -> pid`` starts a worker (default :func:`spawn_worker`).
    """
    result = Tick(interrupted=reap(store, stale_after))
    limit = max_running or max_concurrent(store)
    waiting = {run.id for run in store.list_runs("queued") if waiting_for(store, run)}
    while (run := store.claim_next(limit, skip=waiting)) is not None:
        try:
            pid = (spawn or spawn_worker)(store.home, run.id)
        except OSError as err:
            store.finish(run.id, None, "failed", f"could not start a worker process ({err})")
            continue
        store.set_pid(run.id, pid)
        result.started.append(run.id)
    return result


def submit(store: Store, stage: str, config: dict, *, name: str | None = None, start: bool = True,
           spawn=None) -> Run:
    """Validate and freeze ``config`` for ``stage``, queue a run, and (``start``) tick the queue."""
    if not isinstance(config, dict):
        raise ValueError(f"a run config must be a JSON object of {stage} fields, got {type(config).__name__}")
    run = store.create_run(stage, get_stage(stage).freeze(config, store), name)
    if start:
        tick(store, spawn=spawn)
    return store.get_run(run.id)


def resume(store: Store, run_id: str, *, start: bool = True, spawn=None) -> Run:
    """Queue a stopped, interrupted or failed run again under its id, from its last checkpoint.

    Metrics and samples past the checkpoint's step are dropped now; the worker restores the rest.

    Raises:
        InvalidRunState: the run is queued, running or finished.
        CheckpointError: its checkpoint is missing or corrupt (the run and database stay as they were).
    """
    run = store.get_run(run_id)
    if run.status not in RESUMABLE:
        raise InvalidRunState(f"run {run_id} is {run.status}: only a stopped, interrupted or failed run can "
                              "be resumed")
    if run.origin == "cli":
        raise InvalidRunState(f"run {run_id} was recorded from a command line (--record), whose checkpoint lives "
                              f"in its --out folder: run that command again to continue it (the command is in "
                              f"{store.run_dir(run_id) / 'foreground.json'}), or submit its config as a new run")
    stage = get_stage(run.stage)
    step = stage.checkpoint_step(store.run_dir(run_id), run.config) if stage.checkpoint_step else 0
    store.requeue(run_id, step)
    log.info("run %s queued to resume from step %d", run_id, step)
    if start:
        tick(store, spawn=spawn)
    return store.get_run(run_id)


def stop(store: Store, run_id: str, *, force: bool = False) -> str:
    """Stop a run: a queued one at once (``"stopped"``); a running one by command (``"stopping"``).

    The worker checks commands every step: it saves a checkpoint, then ends the run as stopped. ``force``
    also kills the worker's process group (SIGKILL): the run becomes interrupted, resumable from its last
    checkpoint; a foreground command recorded with ``--record`` gets SIGINT (Ctrl-C) instead.
    """
    if store.stop_queued(run_id):
        return "stopped"
    run = store.get_run(run_id)
    if run.status != "running":
        raise InvalidRunState(f"run {run_id} is {run.status}: there is nothing to stop")
    store.send_command(run_id, "stop")
    if force and run.pid and not dead_reason(run, STALE_AFTER_S) and run.origin == "cli":
        os.kill(run.pid, signal.SIGINT)  # a foreground command: Ctrl-C, not its shell's whole process group
        return "stopping"
    if force and run.pid and not dead_reason(run, STALE_AFTER_S):
        os.killpg(run.pid, signal.SIGKILL)  # the worker leads its own session: pgid == pid
        for _ in range(50):
            if not pid_alive(run.pid):
                break
            time.sleep(0.1)
        reap(store)
    return "stopping"
