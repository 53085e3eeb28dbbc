"""Interrupt and resume: the step count and the metric series continue, and the run ends where an uninterrupted
one ends (every epoch's prompts and noise come from its seed; optimizer and scheduler states are restored)."""

from __future__ import annotations

import pytest
import torch

from flowopd.adapters import adapter_parameters
from flowopd.layout import CHECKPOINT_DIR, PREVIOUS_CHECKPOINT_DIR
from flowopd.methods.grpo.trainer import train_grpo
from flowopd.methods.opd.trainer import train_opd
from flowopd.training.checkpoint import CheckpointError, checkpoint_step


def _weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in adapter_parameters(model, "teacher").items()}


def test_stop_then_resume_continues_the_steps_and_matches_an_uninterrupted_run(tiny, grpo_config, tmp_path):
    cfg = grpo_config(epochs=3, checkpoint_every=10, warmup_steps=2, lr_schedule="cosine", ema=True, ema_every=2)
    straight = tiny()
    straight_steps = []
    train_grpo(straight, cfg, tmp_path / "straight", callback=lambda m: straight_steps.append(m["step"]))

    steps: list[int] = []
    first = train_grpo(tiny(), cfg, tmp_path / "run", callback=lambda m: steps.append(m["step"]),
                       should_stop=lambda: len(steps) >= 1)
    assert first.stopped and first.step == 2 and checkpoint_step(tmp_path / "run") == 2  # saved before stopping
    resumed_model = tiny()
    second = train_grpo(resumed_model, cfg, tmp_path / "run", callback=lambda m: steps.append(m["step"]))

    assert not second.stopped and (second.step, second.epoch) == (6, 3)
    assert steps == straight_steps == [2, 4, 6]  # no step twice, none missing
    for name, value in _weights(straight).items():  # EMA weights, exported at the end
        torch.testing.assert_close(_weights(resumed_model)[name], value)


@pytest.mark.parametrize("kind, decay", [("nft", {"old_decay_rate": 0.1}), ("awm", {"ema_target_decay": 0.5})])
def test_forward_rl_stop_then_resume_matches_an_uninterrupted_run(tiny, forward_rl_config, tmp_path, kind,
                                                                   decay) -> None:
    from flowopd.methods.awm.trainer import train_awm
    from flowopd.methods.nft.trainer import train_nft

    train = {"nft": train_nft, "awm": train_awm}[kind]
    cfg = forward_rl_config(kind, epochs=3, lr=1e-2, checkpoint_every=10, warmup_steps=1, ema=True, ema_every=2,
                            **decay)
    straight, seen_straight = tiny(), []
    train(straight, cfg, tmp_path / "straight", callback=seen_straight.append)
    seen: list[dict] = []
    first = train(tiny(), cfg, tmp_path / "run", callback=seen.append, should_stop=lambda: len(seen) >= 1)
    assert first.stopped and first.step == 2
    resumed = tiny()
    second = train(resumed, cfg, tmp_path / "run", callback=seen.append)
    assert (second.step, second.epoch) == (6, 3)
    assert [m["step"] for m in seen] == [m["step"] for m in seen_straight] == [2, 4, 6]
    assert seen[-1]["loss"] == pytest.approx(seen_straight[-1]["loss"], rel=1e-5)
    for name in ("teacher", "teacher_old"):  # the trained adapter and the old (NFT) / EMA target (AWM) one
        want = {n: p.detach().clone() for n, p in adapter_parameters(straight, name).items()}
        for n, value in adapter_parameters(resumed, name).items():
            torch.testing.assert_close(value.detach(), want[n])


@pytest.mark.parametrize("kl_norm", ["none", "per-task"])  # per-task: epoch 2 divides by epoch 1's KL means
def test_opd_stop_then_resume_matches_an_uninterrupted_run(tiny, make_teachers, opd_config, tmp_path, kl_norm):
    model = tiny()
    teachers = make_teachers(model, {"compose": 1, "prefer": 2})
    cfg = opd_config(teachers, epochs=2, lr=1e-2, ema=True, ema_every=1, kl_norm=kl_norm)
    straight, seen_straight = tiny(), []
    train_opd(straight, cfg, tmp_path / "straight", callback=lambda m: seen_straight.append(m))
    seen: list[dict] = []
    assert train_opd(tiny(), cfg, tmp_path / "run", callback=seen.append, should_stop=lambda: len(seen) >= 1).stopped
    resumed = tiny()
    assert train_opd(resumed, cfg, tmp_path / "run", callback=seen.append).step == 4
    assert [m["step"] for m in seen] == [m["step"] for m in seen_straight] == [2, 4]
    assert seen[1]["kl/teacher"] == pytest.approx(seen_straight[1]["kl/teacher"], rel=1e-5)
    for name, value in adapter_parameters(straight, "student").items():
        torch.testing.assert_close(adapter_parameters(resumed, "student")[name], value)


def test_a_resume_trains_at_the_configs_learning_rate(tiny, grpo_config, tmp_path):
    """The checkpoint's optimizer state carries the rate it was saved with; a resume with a lower lr (what a
    divergence message advises) uses the new one, on the schedule's position."""
    from flowopd.methods.grpo.trainer import GRPOTrainer

    train_grpo(tiny(), grpo_config(epochs=1, lr=1e-3), tmp_path)
    rates: list[float] = []
    cfg = grpo_config(epochs=3, lr=1e-5, weight_decay=0.5, lr_schedule="linear")
    train_grpo(tiny(), cfg, tmp_path, callback=lambda m: rates.append(m["lr"]))
    assert rates == pytest.approx([1e-5 * (1 - 3 / 6), 1e-5 * (1 - 5 / 6)])  # steps 3 and 5 of 6
    trainer = GRPOTrainer(tiny(), cfg, tmp_path)  # resumes from the step-6 checkpoint
    assert [(g["initial_lr"], g["weight_decay"]) for g in trainer.opt.param_groups] == [(1e-5, 0.5)]
    assert trainer.opt.param_groups[0]["lr"] == pytest.approx(0.0) and trainer.step == 6


def test_no_resume_starts_over_and_a_torn_save_falls_back(tiny, grpo_config, tmp_path):
    cfg = grpo_config(epochs=1)
    train_grpo(tiny(), cfg, tmp_path)
    steps: list[int] = []
    train_grpo(tiny(), cfg, tmp_path, resume=False, callback=lambda m: steps.append(m["step"]))
    assert steps == [2]
    # A save killed between its two renames leaves only checkpoint.prev/: the resume uses it.
    (tmp_path / CHECKPOINT_DIR).rename(tmp_path / PREVIOUS_CHECKPOINT_DIR)
    assert checkpoint_step(tmp_path) == 2
    assert train_grpo(tiny(), cfg, tmp_path).step == 2  # nothing left to train


def test_a_checkpoint_of_another_stage_is_refused(tiny, grpo_config, opd_config, make_teachers, tmp_path):
    model = tiny()
    train_grpo(model, grpo_config(), tmp_path / "run")
    teachers = make_teachers(model, {"prefer": 1})
    with pytest.raises(CheckpointError, match="is a 'grpo' checkpoint, not a 'opd' one: use another --out folder"):
        train_opd(model, opd_config(teachers), tmp_path / "run")


class _StopAfterStep:
    """A callback whose ``stop_now`` turns true once optimizer step ``step`` was taken (the progress lines say it),
    as the app's Stop arriving in the middle of an epoch."""

    def __new__(cls, step: int, seen: list):
        from flowopd.events import FunctionCallback

        class Stopper(FunctionCallback):
            def on_progress(self, progress) -> None:
                if f"optimizer step {step}" in (progress.message or ""):
                    self.asked = True

            def stop_now(self) -> bool:
                self.polls += 1
                return self.asked

        stopper = Stopper(seen.append)
        stopper.asked, stopper.polls = False, 0
        return stopper


@pytest.mark.parametrize("kind", ["grpo", "nft", "awm", "opd"])
def test_a_stop_inside_an_epoch_lands_at_the_next_optimizer_step_and_resumes_exactly(
        tiny, grpo_config, forward_rl_config, opd_config, make_teachers, tmp_path, kind) -> None:
    """Stop after the first optimizer step of epoch 2 (of 2): the run stops before the second, its checkpoint is
    there (step 3), and the resume, which draws the epoch's rollout again and skips the step taken, ends where a
    straight run ends: the same weights and the same epoch metrics."""
    from flowopd.methods.awm.trainer import train_awm
    from flowopd.methods.nft.trainer import train_nft

    if kind == "opd":
        cfg, train, name = opd_config(make_teachers(tiny(), {"compose": 1, "prefer": 2}), epochs=3, lr=1e-2,
                                      ema=True, ema_every=1), train_opd, "student"
    elif kind in ("nft", "awm"):
        cfg = forward_rl_config(kind, epochs=3, lr=1e-2, ema=True, ema_every=2)
        train, name = {"nft": train_nft, "awm": train_awm}[kind], "teacher"
    else:
        cfg, train, name = grpo_config(epochs=3, warmup_steps=2, lr_schedule="cosine"), train_grpo, "teacher"
    straight, seen_straight = tiny(), []
    train(straight, cfg, tmp_path / "straight", callback=seen_straight.append)
    seen: list[dict] = []
    stopper = _StopAfterStep(3, seen)
    first = train(tiny(), cfg, tmp_path / "run", callback=stopper)
    assert first.stopped and first.step == 3 and checkpoint_step(tmp_path / "run") == 3  # checkpointed there
    assert [m["step"] for m in seen] == [2]  # epoch 2 is unfinished: no metrics row yet
    resumed = tiny()
    second = train(resumed, cfg, tmp_path / "run", callback=seen.append)
    assert (second.step, second.epoch) == (6, 3)
    assert [m["step"] for m in seen] == [m["step"] for m in seen_straight] == [2, 4, 6]
    for got, want in zip(seen, seen_straight):  # epoch 2's loss and gradient norms include the step it skipped
        for key in ("loss", "grad_norm"):
            assert got[key] == pytest.approx(want[key], rel=1e-5), (got["step"], key)
    for n, value in adapter_parameters(straight, name).items():
        torch.testing.assert_close(adapter_parameters(resumed, name)[n], value)


def test_a_stop_before_an_epochs_first_step_checkpoints_its_start(tiny, grpo_config, tmp_path) -> None:
    """Stop right after epoch 2's rollout: nothing of the epoch is kept (step 2), and the resume redoes it."""
    cfg = grpo_config(epochs=2)
    straight, seen_straight = tiny(), []
    train_grpo(straight, cfg, tmp_path / "straight", callback=seen_straight.append)
    seen: list[dict] = []
    first = train_grpo(tiny(), cfg, tmp_path / "run", callback=_StopAfterStep(2, seen))
    assert first.stopped and first.step == 2 and checkpoint_step(tmp_path / "run") == 2
    resumed = tiny()
    train_grpo(resumed, cfg, tmp_path / "run", callback=seen.append)
    assert [m["step"] for m in seen] == [2, 4] and seen[1]["loss"] == pytest.approx(seen_straight[1]["loss"], rel=1e-5)
    for n, value in adapter_parameters(straight, "teacher").items():
        torch.testing.assert_close(adapter_parameters(resumed, "teacher")[n], value)
