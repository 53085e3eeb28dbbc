"""Workers executed in-process (fast): commands, exact resume, failures, eval, checkpoint errors.

Real worker processes (kill -9, detached start, the queue chaining) are in test_store_processes.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flowopd_studio.storage.errors import CheckpointError, InvalidRunState
from flowopd_studio.storage.queue import resume, stop, submit
from flowopd_studio.storage.worker import execute


def _start(store, fake_spawn, stage: str, config: dict) -> str:
    run = submit(store, stage, config, spawn=None)
    assert fake_spawn[-1] == run.id and store.get_run(run.id).status == "running"
    return run.id


def test_pretrain_runs_to_the_end(store, fake_spawn, tiny_pretrain, loss_steps) -> None:
    run_id = _start(store, fake_spawn, "pretrain", tiny_pretrain(steps=20, checkpoint_every=10))
    assert execute(store.home, run_id) == 0
    run = store.get_run(run_id)
    assert (run.status, run.step, run.total_steps, run.device, run.error) == ("finished", 20, 20, "cpu", None)
    assert loss_steps(store, run_id) == list(range(1, 21))
    assert {r["name"] for r in store.metrics(run_id)} == {"loss", "lr", "images_per_s"}
    assert [(a["kind"], a["step"]) for a in store.artifacts(run_id)] == [("checkpoint", 20)]
    samples = store.samples(run_id)
    assert sorted({s["step"] for s in samples}) == [10, 20] and len(samples) == 8  # one per task and checkpoint
    assert all(store.path(s["path"]).is_file() for s in samples)


def test_stop_then_resume_continues_exactly(store, fake_spawn, tiny_pretrain, loss_steps) -> None:
    config = tiny_pretrain(steps=12, checkpoint_every=100)
    straight = _start(store, fake_spawn, "pretrain", config)
    execute(store.home, straight)

    run_id = _start(store, fake_spawn, "pretrain", config)
    assert stop(store, run_id) == "stopping"  # the command waits in the store; the worker sees it at step 1
    assert execute(store.home, run_id) == 0
    run = store.get_run(run_id)
    assert (run.status, run.step) == ("stopped", 1)
    assert store.artifacts(run_id)[0]["step"] == 1  # stop wrote a checkpoint first
    assert resume(store, run_id).status == "running" and fake_spawn[-1] == run_id
    assert execute(store.home, run_id) == 0
    assert store.get_run(run_id).status == "finished"
    assert loss_steps(store, run_id) == list(range(1, 13))
    losses = [r["value"] for r in store.metrics(run_id, "loss")]
    assert losses == pytest.approx([r["value"] for r in store.metrics(straight, "loss")], rel=1e-5)


def test_checkpoint_and_sample_now(store, fake_spawn, tiny_pretrain, loss_steps) -> None:
    run_id = _start(store, fake_spawn, "pretrain", tiny_pretrain(steps=6, checkpoint_every=100))
    store.send_command(run_id, "checkpoint")
    store.send_command(run_id, "sample")
    assert execute(store.home, run_id) == 0
    assert store.get_run(run_id).status == "finished"
    assert sorted({s["step"] for s in store.samples(run_id)}) == [1, 6]  # on request at step 1, and the end
    assert loss_steps(store, run_id) == list(range(1, 7))  # the in-process pause lost and repeated nothing


def test_exception_fails_the_run_with_one_line(store, fake_spawn, tiny_pretrain, monkeypatch: pytest.MonkeyPatch,
                                               caplog) -> None:
    def explode(*args, **kwargs):
        raise FloatingPointError("pretraining loss became nan at step 3: lower lr")

    monkeypatch.setattr("flowopd.pretrain.pretrain", explode)
    run_id = _start(store, fake_spawn, "pretrain", tiny_pretrain())
    assert execute(store.home, run_id) == 1
    run = store.get_run(run_id)
    assert run.status == "failed" and run.error.startswith("FloatingPointError: pretraining loss became nan")
    assert "\n" not in run.error and "Traceback" not in run.error  # one line; the traceback is in the log
    assert any(r.exc_info and r.exc_info[0] is FloatingPointError for r in caplog.records)  # -> worker.log


def test_write_failure_fails_the_run_clearly(store, fake_spawn, tiny_pretrain, monkeypatch) -> None:
    real = __import__("sqlite_utils").db.Table.insert_all

    def disk_full(self, records, *args, **kwargs):
        if self.name == "metrics":
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, records, *args, **kwargs)

    monkeypatch.setattr("sqlite_utils.db.Table.insert_all", disk_full)
    run_id = _start(store, fake_spawn, "pretrain", tiny_pretrain(steps=20, checkpoint_every=5))
    assert execute(store.home, run_id) == 1
    run = store.get_run(run_id)
    assert run.status == "failed"
    assert "StoreWriteError: could not write" in run.error and "database or disk is full" in run.error
    assert "free disk space" in run.error
    assert store.integrity_check() == "ok" and store.metrics(run_id) == []


def _stopped_at_checkpoint(store, fake_spawn, config: dict) -> tuple[str, Path]:
    run_id = _start(store, fake_spawn, "pretrain", config)
    store.send_command(run_id, "stop")
    execute(store.home, run_id)
    return run_id, store.run_dir(run_id) / "checkpoint"


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_resume_with_bad_checkpoint(store, fake_spawn, tiny_pretrain, damage: str) -> None:
    run_id, folder = _stopped_at_checkpoint(store, fake_spawn, tiny_pretrain(steps=40, checkpoint_every=5))
    for state in (folder / "train_state.pt", folder / "train_state.last-good.pt"):
        if damage == "missing":
            state.unlink()
        else:
            state.write_bytes(state.read_bytes()[:300])
    before = (store.get_run(run_id), store.metrics(run_id))
    with pytest.raises(CheckpointError, match=f"train_state.pt is {damage}"):
        resume(store, run_id)
    assert (store.get_run(run_id), store.metrics(run_id)) == before  # run and rows untouched
    assert store.integrity_check() == "ok"


def test_torn_checkpoint_falls_back_to_last_good_copy(store, fake_spawn, tiny_pretrain, loss_steps) -> None:
    run_id, folder = _stopped_at_checkpoint(store, fake_spawn, tiny_pretrain(steps=8, checkpoint_every=100))
    state = folder / "train_state.pt"
    state.write_bytes(state.read_bytes()[:300])  # as if killed while pretrain() was saving
    assert resume(store, run_id).resume_step == 1
    assert execute(store.home, run_id) == 0
    assert loss_steps(store, run_id) == list(range(1, 9))


def test_resume_refuses_finished_and_running(store, fake_spawn, tiny_pretrain) -> None:
    run_id = _start(store, fake_spawn, "pretrain", tiny_pretrain(steps=2))
    with pytest.raises(InvalidRunState, match="running"):
        resume(store, run_id)
    execute(store.home, run_id)
    with pytest.raises(InvalidRunState, match="finished: only a stopped"):
        resume(store, run_id)


def test_bad_config_is_refused_at_submit(store, tiny_pretrain) -> None:
    with pytest.raises(ValueError, match=r"unknown pretrain config keys \['stepz'\]"):
        submit(store, "pretrain", {"stepz": 3})
    with pytest.raises(ValueError, match="unknown stage 'nosuch'"):
        submit(store, "nosuch", {})
    with pytest.raises(ValueError, match="model folder /nonexistent does not exist"):
        submit(store, "eval", {"model": "/nonexistent"})
    assert store.list_runs() == []


def test_eval_stage(store, fake_spawn, small_model_dir: Path) -> None:
    run_id = _start(store, fake_spawn, "eval", {"model": str(small_model_dir), "tasks": ["prefer"],
                                                 "num_steps": 2})
    assert execute(store.home, run_id) == 0
    run = store.get_run(run_id)
    assert (run.status, run.step, run.total_steps) == ("finished", 1, 1)
    metrics = store.latest_metrics(run_id)
    assert 0 <= metrics["eval/prefer"] <= 1 and metrics["eval/average"] == metrics["eval/prefer"]
    assert store.artifacts(run_id)[0]["kind"] == "report" and len(store.samples(run_id)) >= 1


def test_eval_stage_of_an_adapter_on_the_first_prompts(store, fake_spawn, small_model, small_model_dir: Path,
                                                         make_adapter, tmp_path: Path) -> None:
    """An imported teacher's quick evaluation: ``adapter`` on top of the model, ``limit`` test prompts."""
    folder = make_adapter(small_model, tmp_path / "adapter", zero=False)
    with pytest.raises(ValueError, match="limit=0 is invalid"):
        submit(store, "eval", {"model": str(small_model_dir), "limit": 0})
    run_id = _start(store, fake_spawn, "eval", {"model": str(small_model_dir), "tasks": ["text"], "num_steps": 2,
                                                 "adapter": str(folder), "limit": 3})
    assert execute(store.home, run_id) == 0
    assert store.get_run(run_id).status == "finished" and 0 <= store.latest_metrics(run_id)["eval/text"] <= 1
    report = (store.run_dir(run_id) / "report.json").read_text()
    assert '"text"' in report and len(store.samples(run_id)) == 3  # 3 prompts evaluated, each sampled


def test_eval_of_a_pretrain_run_and_stop(store, fake_spawn, tiny_pretrain) -> None:
    base = _start(store, fake_spawn, "pretrain", tiny_pretrain(steps=2))
    execute(store.home, base)
    run_id = _start(store, fake_spawn, "eval", {"model": base, "tasks": ["prefer", "quality"], "num_steps": 2})
    assert store.get_run(run_id).config["model"] == base
    store.send_command(run_id, "stop")
    assert execute(store.home, run_id) == 0
    run = store.get_run(run_id)
    assert (run.status, run.step) == ("stopped", 1)  # stopped after its first task
    with pytest.raises(ValueError, match="is a eval run, not a pretrain run"):
        submit(store, "eval", {"model": run_id})


def test_a_queued_run_waits_for_the_runs_it_builds_on(store, fake_spawn) -> None:
    """A distillation that names a teacher's run id starts only once that run has finished, even when the
    queue may run several at a time (the app's whole pipeline relies on it)."""
    from flowopd_studio.storage.queue import tick, waiting_for

    teacher = store.create_run("grpo", {"rewards": {"text": 1.0}}, "teacher")
    student = store.create_run("coldstart", {"mode": "merge", "teachers": {"text": teacher.id}}, "student")
    assert waiting_for(store, student) == [teacher.id]
    assert tick(store, max_running=2).started == [teacher.id]
    assert store.get_run(student.id).status == "queued"
    store.finish(teacher.id, store.get_run(teacher.id).pid, "finished")
    assert waiting_for(store, store.get_run(student.id)) == []
    assert tick(store, max_running=2).started == [student.id]
