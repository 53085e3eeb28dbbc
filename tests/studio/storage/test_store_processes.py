"""Real worker processes on a real SQLite file: detached start, SIGTERM, kill -9, chaining, concurrency.

Each real worker pays ~5-10 s of imports (torch, diffusers) on a busy 2-core machine, so one test
covers the whole lifecycle with two workers. The measured figures are printed (run with ``-s``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from flowopd_studio.storage.paths import CODE_ROOT
from flowopd_studio.storage.queue import pid_alive, resume, submit, tick
from flowopd_studio.storage.worker import execute

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _kill_leftover_workers(store):
    """If a test fails half way, kill the workers it started (their pids are in its own temporary store)."""
    yield
    for run in store.list_runs("running"):
        if run.pid and run.pid != os.getpid() and pid_alive(run.pid):
            os.killpg(run.pid, signal.SIGKILL)


def _rows(store, run_id: str) -> int:
    return store.db.execute("SELECT count(*) FROM metrics WHERE run_id = ?", [run_id]).fetchone()[0]


def test_lifecycle_with_real_workers(store, tiny_pretrain, wait_for, loss_steps, monkeypatch) -> None:
    a = submit(store, "pretrain", tiny_pretrain(steps=3000, checkpoint_every=20), name="a")
    b = submit(store, "pretrain", tiny_pretrain(steps=300, checkpoint_every=25), name="b")
    assert store.get_run(a.id).status == "running" and store.get_run(b.id).status == "queued"  # one at a time
    t_submit = time.monotonic()
    wait_for(lambda: store.get_run(a.id).device, 120, "worker a to start")
    startup_s = time.monotonic() - t_submit
    assert store.get_run(a.id).pid != os.getpid() and os.getsid(store.get_run(a.id).pid) != os.getsid(0)

    # SIGTERM (e.g. a shutdown) is a graceful stop: checkpoint, status stopped; a's worker then starts b.
    wait_for(lambda: store.get_run(a.id).step >= 20, 60, "run a to pass its first checkpoint")
    os.kill(store.get_run(a.id).pid, signal.SIGTERM)
    run_a = wait_for(lambda: (r := store.get_run(a.id)).status == "stopped" and r, 30, "run a to stop")
    assert store.artifacts(a.id)[-1]["step"] == run_a.step and loss_steps(store, a.id) == list(range(1, run_a.step + 1))
    wait_for(lambda: store.get_run(b.id).status == "running", 10, "a's worker to start queued run b")

    # kill -9 in mid-run: noticed by the next tick, interrupted with the last lines of its log.
    run_b = wait_for(lambda: (r := store.get_run(b.id)).step >= 50 and r.pid and r, 120, "run b to reach step 50")
    os.kill(run_b.pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: b.id in tick(store).interrupted, 30, "tick to notice the dead worker", every=0.01)
    detect_s = time.monotonic() - killed
    run_b = store.get_run(b.id)
    assert run_b.status == "interrupted" and f"worker process {run_b.pid} is gone" in run_b.error
    assert "last" in run_b.error and "worker.log" in run_b.error
    rows_at_kill, last_step = _rows(store, b.id), max(loss_steps(store, b.id))
    try:  # was the worker killed while pretrain() rewrote train_state.pt? (then resume uses the last good copy)
        torch.load(store.run_dir(b.id) / "checkpoint" / "train_state.pt", weights_only=False)
        torn = False
    except Exception:
        torn = True

    # Resume: same id, from the checkpoint; metric rows past it are dropped, then redone exactly once.
    monkeypatch.setattr("flowopd_studio.storage.queue.spawn_worker", lambda home, run_id: os.getpid())
    resumed = resume(store, b.id)
    assert resumed.id == b.id and resumed.resume_step % 25 == 0 and resumed.resume_step <= last_step
    rows_after_resume = _rows(store, b.id)
    assert rows_after_resume == 3 * resumed.resume_step
    assert execute(store.home, b.id) == 0
    assert store.get_run(b.id).status == "finished"
    assert loss_steps(store, b.id) == list(range(1, 301))  # no step lost, none duplicated
    figures = {"worker_startup_s": round(startup_s, 1), "a_stopped_at_step": run_a.step,
               "b_killed_after_step": last_step, "b_rows_at_kill": rows_at_kill,
               "b_checkpoint_torn_by_kill": torn, "b_checkpoint_step": resumed.resume_step,
               "b_rows_after_resume": rows_after_resume,
               "b_rows_final": _rows(store, b.id), "detect_dead_worker_s": round(detect_s, 3)}
    print("\nFIGURES lifecycle", json.dumps(figures))


WRITER = """
import os, sys, time
from pathlib import Path
from flowopd_studio.storage.reporter import Heartbeat, Reporter
from flowopd_studio.storage.store import Store
home, run_id, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = Store(home)
assert store.set_pid(run_id, os.getpid())
reporter = Reporter(store, store.get_run(run_id), os.getpid(), flush_every_s=0)  # one transaction per step
beat = Heartbeat(store.home, reporter, every_s=0.02)
beat.start()
# Start line: both writers begin together, however long each took to start, so they surely overlap.
(Path(home) / f"ready_{run_id}").touch()
while not (Path(home) / "go").exists():
    time.sleep(0.005)
for step in range(1, steps + 1):
    reporter.log(step, {"loss": 1 / step, "lr": 0.1, "step": step})
    reporter.commands()
reporter.flush()
beat.stop()
assert store.finish(run_id, os.getpid(), "finished")
"""


def test_two_writers_and_a_reader(store) -> None:
    steps = 500
    ids = [store.create_run("pretrain", {}, f"w{i}").id for i in range(2)]
    for _ in ids:
        store.claim_next(2)
    env = {**os.environ, "PYTHONPATH": str(CODE_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(store.home), run_id, str(steps)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for run_id in ids]
    deadline = time.monotonic() + 60
    while not all((store.home / f"ready_{i}").exists() for i in ids) and time.monotonic() < deadline:
        time.sleep(0.005)
    (store.home / "go").touch()
    reads, start = 0, time.monotonic()
    while any(p.poll() is None for p in procs):  # the reader: what the app's 2 s timer does, as fast as it can
        for run_id in ids:
            store.metrics(run_id, "loss", since_step=max(0, reads - 50))
            store.latest_metrics(run_id)
        store.list_runs()
        store.set_setting("reader_polls", reads)  # and a write from this third process
        reads += 1
    elapsed = time.monotonic() - start
    for p in procs:
        out, err = p.communicate()
        assert p.returncode == 0 and "locked" not in err, err
    for run_id in ids:
        assert store.get_run(run_id).status == "finished"
        assert [r["step"] for r in store.metrics(run_id, "loss")] == list(range(1, steps + 1))
    spans = [store.db.execute("SELECT min(time), max(time) FROM metrics WHERE run_id = ?", [i]).fetchone() for i in ids]
    assert min(s[1] for s in spans) > max(s[0] for s in spans), spans  # the two writers did overlap
    assert store.integrity_check() == "ok"
    print("\nFIGURES concurrency", json.dumps({"writers": 2, "rows_per_writer": 3 * steps,
                                              "write_transactions_per_writer": steps, "reader_polls": reads,
                                              "seconds": round(elapsed, 1)}))


def test_worker_exiting_before_its_pid_is_recorded_still_reads_as_failure(store, tiny_pretrain) -> None:
    """The race behind a load-dependent timeout: the watcher reaps the exit before tick() stores the pid."""
    from flowopd_studio.storage.paths import run_dir
    from flowopd_studio.storage.queue import _watch
    from flowopd_studio.storage.stages import get_stage

    run = store.create_run("pretrain", get_stage("pretrain").freeze(tiny_pretrain(), store))
    assert store.claim_next(1).id == run.id and store.get_run(run.id).pid is None  # claimed, no pid yet
    run_dir(store.home, run.id).mkdir(parents=True, exist_ok=True)
    _watch(store.home, run.id, subprocess.Popen([shutil.which("false")]))
    failed = store.get_run(run.id)
    assert failed.status == "failed" and failed.error.startswith(f"worker process {failed.pid} exited with status 1")


def test_worker_exiting_nonzero_reads_as_failure(store, tiny_pretrain, wait_for, monkeypatch) -> None:
    monkeypatch.setattr(sys, "executable", shutil.which("false"))  # a "python" that exits 1 at once
    run = submit(store, "pretrain", tiny_pretrain())
    failed = wait_for(lambda: (r := store.get_run(run.id)).status == "failed" and r, 30, "the exit to be recorded")
    assert failed.error.startswith(f"worker process {failed.pid} exited with status 1")
