"""Stages ``nft`` and ``awm`` in the run store, in-process: a run finishes with its metrics and adapter, a
stopped run resumes exactly, and an OPD run takes the run's id as a teacher."""

from __future__ import annotations

import pytest

from flowopd_studio.storage.queue import resume, stop, submit
from flowopd_studio.storage.stages import get_stage
from flowopd_studio.storage.worker import execute

FAST = dict(batch_size=8, group_size=4, train_batch_size=4, num_steps=3, optimizer_steps_per_epoch=2, eval_steps=3,
            ema=False, sample_every=0, checkpoint_every=1, lora_rank=4, lora_alpha=8.0, timesteps_per_sample=2)
# Per stage: defaults the frozen config must hold, and metrics only that algorithm logs.
DEFAULTS = {"nft": {"beta": 1.0, "guidance": 1.0, "ref_weight": 1e-4},
            "awm": {"clip_range": 1.0, "guidance": 1.0, "ref_weight": 0.003}}
OWN_METRICS = {"nft": {"nft/positive", "nft/negative", "nft/old_decay"}, "awm": {"policy_loss", "ratio", "awm/fm_loss"}}
STAGES = pytest.mark.parametrize("stage", ["nft", "awm"])


def _config(model_dir, epochs: int = 2, **extra) -> dict:
    return dict(FAST, epochs=epochs, rewards={"prefer": 1.0}, prompt_tasks={"prefer": 1.0}, model=str(model_dir),
                **extra)


def _run(store, fake_spawn, stage: str, config: dict) -> str:
    run = submit(store, stage, config, spawn=None)
    assert fake_spawn[-1] == run.id
    assert execute(store.home, run.id) == 0
    return run.id


@STAGES
def test_the_stage_is_registered_and_freezes_the_full_config(store, small_model_dir, stage) -> None:
    assert get_stage(stage).name == stage
    run = submit(store, stage, _config(small_model_dir), start=False)
    assert {k: run.config[k] for k in DEFAULTS[stage]} == DEFAULTS[stage]
    with pytest.raises(ValueError, match="timesteps_per_sample=9 is invalid"):
        submit(store, stage, _config(small_model_dir, timesteps_per_sample=9), start=False)


@STAGES
def test_a_run_finishes_then_teaches_an_opd_student(store, fake_spawn, small_model_dir, loss_steps, stage) -> None:
    run_id = _run(store, fake_spawn, stage, _config(small_model_dir))
    run = store.get_run(run_id)
    assert run.status == "finished", run.error
    assert (run.step, run.total_steps) == (4, 4) and loss_steps(store, run_id) == [2, 4]
    assert {"loss", "reward/prefer"} | OWN_METRICS[stage] <= {r["name"] for r in store.metrics(run_id)}
    assert [a["kind"] for a in store.artifacts(run_id)] == ["checkpoint", "adapter"]  # the store keeps the last
    opd = _run(store, fake_spawn, "opd", dict({k: v for k, v in FAST.items() if k != "timesteps_per_sample"},
                                              epochs=1, teachers={"prefer": run_id}, prompt_tasks={"prefer": 1.0},
                                              model=str(small_model_dir), log_rewards=False))
    assert store.get_run(opd).status == "finished", store.get_run(opd).error


@STAGES
def test_stop_then_resume_continues_exactly(store, fake_spawn, small_model_dir, loss_steps, stage) -> None:
    config = _config(small_model_dir, epochs=3, lr=1e-2)
    straight = _run(store, fake_spawn, stage, config)
    run = submit(store, stage, config, spawn=None)
    assert stop(store, run.id) == "stopping"  # seen before the first optimizer step: step 0
    assert execute(store.home, run.id) == 0
    assert (store.get_run(run.id).status, store.get_run(run.id).step) == ("stopped", 0)
    assert resume(store, run.id).resume_step == 0
    assert execute(store.home, run.id) == 0
    assert store.get_run(run.id).status == "finished"
    assert loss_steps(store, run.id) == [2, 4, 6]
    losses = [r["value"] for r in store.metrics(run.id, "loss")]
    assert losses == pytest.approx([r["value"] for r in store.metrics(straight, "loss")], rel=1e-5)
