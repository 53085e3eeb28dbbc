"""The trainer stages in the run store: grpo through a real worker process, stop/resume, coldstart and opd
chained by run ids, the reproduce benchmark, and checkpoint errors.

Models are the small random tiny model (tests/conftest.py's ``small_model_dir``) and runs are as small as
the trainer tests' (8 images per epoch, 3 SDE steps).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from flowopd_studio.storage.errors import CheckpointError
from flowopd_studio.storage.queue import pid_alive, resume, stop, submit
from flowopd_studio.storage.worker import execute

FAST = dict(batch_size=8, group_size=4, train_batch_size=4, num_steps=3, optimizer_steps_per_epoch=2, eval_steps=3,
            ema=False, sample_every=0, checkpoint_every=1, lora_rank=4, lora_alpha=8.0)


def _grpo(model_dir: Path, epochs: int = 2, task: str = "prefer", **extra) -> dict:
    return dict(FAST, epochs=epochs, rewards={task: 1.0}, prompt_tasks={task: 1.0}, model=str(model_dir), **extra)


def _start(store, fake_spawn, stage: str, config: dict) -> str:
    run = submit(store, stage, config, spawn=None)
    assert fake_spawn[-1] == run.id and store.get_run(run.id).status == "running"
    return run.id


def _finished(store, run_id: str) -> None:
    run = store.get_run(run_id)
    assert run.status == "finished", run.error


@pytest.fixture
def _kill_leftover_workers(store):
    """If the real-worker test fails half way, kill the worker it started (its pid is in its own store)."""
    yield
    for run in store.list_runs("running"):
        if run.pid and run.pid != os.getpid() and pid_alive(run.pid):
            os.killpg(run.pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.usefixtures("_kill_leftover_workers")
def test_grpo_run_in_a_real_worker(store, small_model_dir, wait_for, loss_steps) -> None:
    from flowopd.adapters import adapter_names, load_adapter
    from flowopd.models import load_model

    run = submit(store, "grpo", _grpo(small_model_dir, sample_every=1), name="teacher-prefer")
    assert run.config["model"] == str(small_model_dir.resolve()) and run.config["beta"] == 0.04  # frozen, full
    done = wait_for(lambda: (r := store.get_run(run.id)).status not in ("queued", "running") and r, 180,
                    "the grpo worker to end")
    assert done.status == "finished", done.error
    assert (done.step, done.total_steps, done.device) == (4, 4, "cpu")
    assert loss_steps(store, run.id) == [2, 4]  # one row per epoch, at its optimizer step
    names = {r["name"] for r in store.metrics(run.id)}
    assert {"loss", "lr", "reward/prefer", "reward/total", "kl/base", "images_per_s", "grad_norm"} <= names
    artifacts = {a["kind"]: a for a in store.artifacts(run.id)}
    assert artifacts["adapter"]["step"] == 4 and artifacts["checkpoint"]["step"] == 4
    adapter = store.path(artifacts["adapter"]["path"])
    assert (adapter / "adapter.json").is_file()
    model = load_model(small_model_dir)
    load_adapter(model, adapter, "trained")  # the final adapter loads onto its base
    assert "trained" in adapter_names(model)
    assert sorted({s["step"] for s in store.samples(run.id)}) == [2, 4]


def test_grpo_stop_then_resume_continues_exactly(store, fake_spawn, small_model_dir, loss_steps) -> None:
    config = _grpo(small_model_dir, epochs=3)
    straight = _start(store, fake_spawn, "grpo", config)
    assert execute(store.home, straight) == 0
    _finished(store, straight)

    run_id = _start(store, fake_spawn, "grpo", config)
    # seen before the first optimizer step (after the first rollout): its start is the checkpoint
    assert stop(store, run_id) == "stopping"
    assert execute(store.home, run_id) == 0
    assert (store.get_run(run_id).status, store.get_run(run_id).step) == ("stopped", 0)
    assert resume(store, run_id).resume_step == 0
    assert execute(store.home, run_id) == 0
    _finished(store, run_id)
    assert loss_steps(store, run_id) == [2, 4, 6]
    losses = [r["value"] for r in store.metrics(run_id, "loss")]
    assert losses == pytest.approx([r["value"] for r in store.metrics(straight, "loss")], rel=1e-5)


def test_checkpoint_and_sample_now_pause_and_continue(store, fake_spawn, small_model_dir, loss_steps) -> None:
    run_id = _start(store, fake_spawn, "grpo", _grpo(small_model_dir, epochs=2, checkpoint_every=10))
    store.send_command(run_id, "checkpoint")
    store.send_command(run_id, "sample")
    assert execute(store.home, run_id) == 0
    _finished(store, run_id)
    assert loss_steps(store, run_id) == [2, 4]  # the in-process pause lost and repeated nothing
    assert {s["step"] for s in store.samples(run_id)} == {2}  # sampled on request from the step-2 checkpoint
    assert [(a["kind"], a["step"]) for a in store.artifacts(run_id)] == [("checkpoint", 4), ("adapter", 4)]


def test_coldstart_and_opd_take_run_ids(store, fake_spawn, small_model_dir) -> None:
    teachers = {}
    for task in ("prefer", "quality"):
        teachers[task] = _start(store, fake_spawn, "grpo", _grpo(small_model_dir, epochs=1, task=task))
        assert execute(store.home, teachers[task]) == 0
    merge = _start(store, fake_spawn, "coldstart", {"mode": "merge", "teachers": teachers,
                                                    "model": str(small_model_dir)})
    assert store.get_run(merge).config["teachers"]["prefer"] == str(store.run_dir(teachers["prefer"]) / "adapter")
    assert execute(store.home, merge) == 0
    _finished(store, merge)
    opd = _start(store, fake_spawn, "opd", dict(FAST, epochs=1, teachers=teachers, init=merge,
                                                prompt_tasks={"prefer": 1.0, "quality": 1.0},
                                                model=str(small_model_dir)))
    assert execute(store.home, opd) == 0
    _finished(store, opd)
    names = {r["name"] for r in store.metrics(opd)}
    assert {"kl/teacher", "kl/anchor", "reward/prefer", "loss"} <= names
    assert [a["kind"] for a in store.artifacts(opd)] == ["checkpoint", "adapter"]

    pretrain = submit(store, "pretrain", {"steps": 1}, start=False)
    with pytest.raises(ValueError, match=r"teachers\['text'\].*pretrain run"):
        submit(store, "opd", {"teachers": {"text": pretrain.id}}, start=False)
    with pytest.raises(ValueError, match="init=.*not a folder"):
        submit(store, "opd", {"teachers": teachers, "init": "no/such/folder"}, start=False)


def test_reproduce_stage_runs_the_smoke_benchmark(store, fake_spawn, small_model_dir) -> None:
    from flowopd.reproduce.config import ReproduceConfig
    from flowopd.reproduce.runner import stage_count

    run_id = _start(store, fake_spawn, "reproduce", {"budget": "smoke", "model": str(small_model_dir)})
    assert execute(store.home, run_id) == 0
    _finished(store, run_id)
    total = stage_count(ReproduceConfig.preset("smoke"))
    assert [r["step"] for r in store.metrics(run_id, "stages_done")] == list(range(1, total + 1))
    assert store.metrics(run_id, "eval/opd/average")
    reports = [store.path(a["path"]) for a in store.artifacts(run_id) if a["kind"] == "report"]
    assert sorted(p.name for p in reports) == ["report.md", "results.json"]
    assert set(json.loads(reports[0].with_name("results.json").read_text())["rows"]) >= {"opd", "grpo-mix-long"}
    # Every training stage's curve is in the store, under its seed and stage, at its own optimizer steps.
    names = {r["name"] for r in store.metrics(run_id)}
    assert {"seed0/teacher-text/reward/text", "seed0/opd/kl/teacher", "seed0/opd/kl/anchor/step_0",
            "seed0/grpo-mix-long/kl/base", "seed0/coldstart-sft/loss", "seed0/opd-sft/loss"} <= names
    curve = [json.loads(line) for line in (store.run_dir(run_id) / "reproduce/seed0/opd/curve.jsonl").read_text()
             .splitlines()]
    stored = store.metrics(run_id, "seed0/opd/kl/teacher")
    assert [(r["step"], r["value"]) for r in stored] == [(c["step"], pytest.approx(c["kl/teacher"])) for c in curve]
    assert store.get_run(run_id).progress.startswith("reproduce")


def test_corrupt_checkpoint_is_a_store_checkpoint_error(store, fake_spawn, small_model_dir) -> None:
    from flowopd_studio.storage.stages import get_stage

    run_id = _start(store, fake_spawn, "grpo", _grpo(small_model_dir, epochs=1))
    assert execute(store.home, run_id) == 0
    state = store.run_dir(run_id) / "checkpoint" / "state.pt"
    state.write_bytes(b"torn")
    with pytest.raises(CheckpointError, match="unreadable"):
        get_stage("grpo").checkpoint_step(store.run_dir(run_id), store.get_run(run_id).config)
