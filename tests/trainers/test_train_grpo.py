"""The GRPO trainer on the small random model: what trains, what the callback gets, advantages, NaN handling."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from flowopd.adapters import adapter_parameters, add_lora, load_adapter, use_adapter
from flowopd.layout import ADAPTER_DIR, CHECKPOINT_DIR
from flowopd.methods.grpo.trainer import gather_advantages, train_grpo
from flowopd.training.checkpoint import checkpoint_step
from flowopd.training.rollout import reward_applies


def _snapshot(module: torch.nn.Module, lora: bool) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if ("lora_" in n) == lora}


def test_two_steps_train_the_student_only(tiny, randomise, grpo_config, tmp_path):
    model = tiny()
    add_lora(model, "other", 4, 8.0)
    randomise(model, "other")
    base, text = _snapshot(model.transformer, lora=False), _snapshot(model.text_encoder, lora=False)
    other = {n: p.detach().clone() for n, p in adapter_parameters(model, "other").items()}

    result = train_grpo(model, grpo_config(beta=0.04), tmp_path)

    assert (result.step, result.epoch, result.stopped) == (2, 1, False)
    student = adapter_parameters(model, "teacher")
    assert any(p.abs().sum() > 0 for n, p in student.items() if "lora_B" in n)  # B starts at 0
    assert all(torch.equal(p, _snapshot(model.transformer, False)[n]) for n, p in base.items())
    assert all(torch.equal(p, dict(model.text_encoder.named_parameters())[n]) for n, p in text.items())
    assert all(torch.equal(p, adapter_parameters(model, "other")[n]) for n, p in other.items())
    # The exported adapter is what the model holds, and loads back onto the same base.
    load_adapter(model, result.adapter_dir, "again")
    again = adapter_parameters(model, "again")
    assert all(torch.equal(p, again[n.replace(".teacher.", ".again.")]) for n, p in student.items())


def test_callback_gets_rewards_per_task_kl_per_step_and_samples(tiny, grpo_config, tmp_path):
    cfg = grpo_config(rewards={"compose": 1.0, "prefer": 1.0, "quality": 0.5},
                      prompt_tasks={"compose": 1.0, "prefer": 1.0}, sample_every=1, batch_size=16)
    seen = []
    train_grpo(tiny(), cfg, tmp_path, callback=seen.append)

    (m,) = seen
    assert m["step"] == 2 and m["epoch"] == 1
    for key in ("reward/compose", "reward/prefer", "reward/quality", "reward/total", "loss", "lr", "images_per_s",
                "step_time_s", "kl/base/step_0", "kl/base/step_1", "reward_std", "advantage_abs"):
        assert isinstance(m[key], float), key
    assert "kl/base/step_2" not in m  # the default timestep_fraction 0.8 of 3 steps trains 2
    # quality scores every sample, so it is also reported per task; compose only scores compose prompts.
    assert {"reward/quality/compose", "reward/quality/prefer"} <= set(m) and "reward/compose/prefer" not in m
    assert len(m["samples"]) == 4  # 2 fixed test prompts per task
    assert all(isinstance(s["image"], Image.Image) and s["prompt"] and isinstance(s["seed"], int)
               for s in m["samples"])
    assert [s["task"] for s in m["samples"]] == ["compose", "compose", "prefer", "prefer"]


def test_reward_applies_to_its_task_or_to_everything():
    assert reward_applies("text", {"task": "text"}, ["text", "compose"])
    assert not reward_applies("text", {"task": "compose"}, ["text", "compose"])
    assert reward_applies("quality", {"task": "compose"}, ["text", "compose"])


def test_advantages_and_zero_spread_mask_in_one_process():
    from accelerate import Accelerator

    rewards = torch.tensor([1.0, 3.0, 2.0, 2.0])  # the second group has no spread
    adv = gather_advantages(Accelerator(cpu=True), rewards, 2, mask_zero_std=True)
    std = rewards.std(correction=0)
    torch.testing.assert_close(adv.local, torch.tensor([-1.0, 1.0, 0.0, 0.0]) / (std + 1e-4))
    assert adv.keep == [0, 1]


def test_nan_loss_stops_clearly_and_keeps_the_last_checkpoint(tiny, grpo_config, tmp_path, monkeypatch):
    import flowopd.methods.grpo.trainer as trainer

    calls = {"n": 0}
    real = trainer.grpo_step_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 4 else loss  # epoch 1: 2 optimizer steps x 2 trained j

    monkeypatch.setattr(trainer, "grpo_step_loss", poisoned)
    model = tiny()
    with pytest.raises(FloatingPointError, match=r"grpo: the loss became nan at step 3 \(epoch 2\); training "
                                                 r"stopped and the last good checkpoint is .*checkpoint \(step 2\)"):
        train_grpo(model, grpo_config(epochs=3), tmp_path)
    assert checkpoint_step(tmp_path) == 2
    load_adapter(tiny(), tmp_path / CHECKPOINT_DIR / ADAPTER_DIR, "restored")  # intact and loadable
    assert all(torch.isfinite(p).all() for p in adapter_parameters(model, "teacher").values())


def test_exploding_weights_stop_before_they_overwrite_the_last_good_checkpoint(tiny, grpo_config, tmp_path):
    """A step can blow the weights up while they stay finite; they must not become the checkpoint that a
    resume (at a lower lr, as the message advises) continues from."""
    cfg = grpo_config(optimizer_steps_per_epoch=1, epochs=1)
    train_grpo(tiny(), cfg, tmp_path)
    assert checkpoint_step(tmp_path) == 1
    with pytest.raises(FloatingPointError, match=r"grpo: the student's weights (exploded|became non-finite).* after "
                                                 r"step 2 \(epoch 2\); training stopped and the last good checkpoint "
                                                 r"is .*checkpoint \(step 1\): lower lr \(now 1000000.0\)"):
        train_grpo(tiny(), grpo_config(optimizer_steps_per_epoch=1, epochs=3, lr=1e6), tmp_path)
    assert checkpoint_step(tmp_path) == 1
    model = tiny()
    result = train_grpo(model, grpo_config(optimizer_steps_per_epoch=1, epochs=3, lr=1e-4), tmp_path)
    assert result.step == 3 and all(torch.isfinite(p).all() for p in adapter_parameters(model, "teacher").values())


def test_a_rollout_of_diverged_weights_names_the_step_and_the_checkpoint(tiny, grpo_config, tmp_path, monkeypatch):
    from flowopd.methods.grpo.trainer import GRPOTrainer

    train_grpo(tiny(), grpo_config(), tmp_path)

    def broken(self, epoch, tasks):
        raise FloatingPointError("the rollout of adapter 'teacher' produced NaN/inf latents: its weights have "
                                 "diverged")

    monkeypatch.setattr(GRPOTrainer, "make_rollout", broken)
    with pytest.raises(FloatingPointError, match=r"grpo: the rollout of adapter 'teacher' produced NaN/inf latents "
                                                 r"at step 3 \(epoch 2\); training stopped and the last good "
                                                 r"checkpoint is .*checkpoint \(step 2\)"):
        train_grpo(tiny(), grpo_config(epochs=2), tmp_path)


def test_the_configs_seed_fixes_the_new_loras_initialisation(tiny, grpo_config, tmp_path):
    """torch seeds its global generator differently in every process; a run must not depend on it."""
    runs = {}
    for key, (global_seed, seed) in {"a": (1, 0), "b": (2, 0), "c": (1, 5)}.items():
        model = tiny()
        torch.manual_seed(global_seed)
        train_grpo(model, grpo_config(seed=seed, epochs=1), tmp_path / key, callback=lambda m: None)
        runs[key] = {n: p.detach().clone() for n, p in adapter_parameters(model, "teacher").items()}
    for name, value in runs["a"].items():
        assert torch.equal(runs["b"][name], value), name  # same config seed, other global state: same run
    assert not all(torch.equal(runs["c"][n], v) for n, v in runs["a"].items())  # another seed: another init
    from flowopd.adapters import add_lora

    model = tiny()
    torch.manual_seed(3)
    state = torch.get_rng_state()
    add_lora(model, "probe", 2, 4.0, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left as it was


def test_groups_without_reward_spread_do_not_move_the_student(tiny, grpo_config, tmp_path):
    model = tiny()  # random images: the compose detector finds nothing, every reward is 0
    seen = []
    result = train_grpo(model, grpo_config(rewards={"compose": 1.0}, prompt_tasks={"compose": 1.0}), tmp_path,
                        callback=seen.append)
    assert result.step == 2 and seen[0]["trained_fraction"] == 0.0 and seen[0]["reward/compose"] == 0.0
    assert all(p.abs().sum() == 0 for n, p in adapter_parameters(model, "teacher").items() if "lora_B" in n)


def test_grpo_raises_the_reward_it_is_trained_on(tiny, grpo_config, tmp_path):
    """End to end, the sign of everything: from the same start, GRPO on redness gives redder fixed-seed samples
    than GRPO on its negative."""
    import numpy as np

    from flowopd.rewards import REWARDS, register_reward
    from flowopd.rewards.images import as_uint8_list
    from flowopd.sampling import generate

    def redness(images, prompts=None, metadata=None):
        arr = np.stack(as_uint8_list(images, 32)).astype(np.float32) / 255
        return list((arr[..., 0] - arr[..., 1:].mean(-1)).mean((1, 2)))

    register_reward("redness", redness)
    register_reward("blueness", lambda *a: [-r for r in redness(*a)])
    prompts = ["a photo of a circle", "a photo of two squares"] * 4
    kw = dict(seeds=list(range(8)), num_steps=3, guidance=1.0, batch_size=8)
    after = {}
    try:
        for name in ("redness", "blueness"):
            model = tiny()
            before = float(np.mean(redness(generate(model, prompts, **kw))))
            cfg = grpo_config(rewards={name: 1.0}, epochs=8, batch_size=16, group_size=4, train_batch_size=8,
                              lr=3e-2)
            train_grpo(model, cfg, tmp_path / name)
            with torch.no_grad(), use_adapter(model, "teacher"):
                after[name] = float(np.mean(redness(generate(model, prompts, **kw))))
    finally:
        REWARDS.pop("redness"), REWARDS.pop("blueness")
    assert after["redness"] > before > after["blueness"], (before, after)
    assert after["redness"] - after["blueness"] > 0.005, (before, after)


def _trained_steps_per_call(tiny, cfg, tmp_path, monkeypatch) -> list[tuple[int, int]]:
    """(first row, step j) of every step-loss call of one GRPO run."""
    from flowopd.methods.grpo.trainer import GRPOTrainer

    calls, real = [], GRPOTrainer.step_loss
    with monkeypatch.context() as patch:
        patch.setattr(GRPOTrainer, "step_loss",
                      lambda self, roll, adv, rows, j: calls.append((rows[0], j)) or real(self, roll, adv, rows, j))
        train_grpo(tiny(), cfg, tmp_path, resume=False)
    return calls


def test_steps_per_microbatch_trains_a_random_subset_of_the_steps(tiny, grpo_config, tmp_path, monkeypatch):
    every = _trained_steps_per_call(tiny, grpo_config(num_steps=5), tmp_path / "all", monkeypatch)
    assert every == [(r, j) for r in (0, 4) for j in range(4)]  # 2 micro-batches x the 4 trained steps
    cfg = grpo_config(num_steps=5, steps_per_microbatch=2, epochs=2)
    some = _trained_steps_per_call(tiny, cfg, tmp_path / "some", monkeypatch)
    assert len(some) == 2 * 2 * 2  # 2 epochs x 2 micro-batches x 2 steps each
    per_microbatch = [[j for _, j in some[k:k + 2]] for k in range(0, len(some), 2)]
    assert all(len(set(js)) == 2 and js == sorted(js) and set(js) <= set(range(4)) for js in per_microbatch)
    assert len({tuple(js) for js in per_microbatch}) > 1  # drawn anew, not the same pair every time
    again = _trained_steps_per_call(tiny, cfg, tmp_path / "again", monkeypatch)
    assert again == some  # drawn from the run's seed and epoch: a rerun (or a resume) draws the same steps


def test_sde_window_draws_noise_and_trains_on_its_steps_only(tiny, grpo_config, tmp_path, monkeypatch):
    from flowopd.methods.grpo.trainer import GRPOTrainer

    cfg = grpo_config(num_steps=5, sde_window=2, epochs=4)  # 4 trained steps: the window starts at 0, 1 or 2
    calls = _trained_steps_per_call(tiny, cfg, tmp_path / "run", monkeypatch)
    per_epoch = [sorted({j for _, j in calls[k:k + 4]}) for k in range(0, len(calls), 4)]  # 2 micro-batches x 2
    assert len(per_epoch) == 4 and all(js in ([0, 1], [1, 2], [2, 3]) for js in per_epoch)
    assert len({tuple(js) for js in per_epoch}) > 1  # drawn anew per epoch
    trainer = GRPOTrainer(tiny(), cfg, tmp_path / "rollout", resume=False)
    for epoch, window in enumerate(per_epoch):
        assert trainer.sde_steps(epoch) == window  # the rollout's noise and the training use the same steps
        roll = trainer.make_rollout(epoch, cfg.prompt_tasks)
        noisy = [j for j in range(5) if (roll.log_probs[:, j] != 0).all()]
        assert noisy == window and (roll.log_probs[:, [j for j in range(5) if j not in window]] == 0).all()
    assert _trained_steps_per_call(tiny, cfg, tmp_path / "again", monkeypatch) == calls  # seeded: a resume agrees


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_the_lr_schedule_sets_each_steps_learning_rate(tiny, grpo_config, tmp_path, schedule):
    from flowopd.training.loop import lr_factor

    cfg = grpo_config(epochs=3, lr=1e-3, warmup_steps=2, lr_schedule=schedule)
    reported = []
    train_grpo(tiny(), cfg, tmp_path, callback=lambda m: reported.append(m["lr"]))
    # The callback reports the rate of each epoch's last step: steps 1, 3 and 5 (0-based) of 6.
    expected = [1e-3 * lr_factor(s, 2, 6, schedule) for s in (1, 3, 5)]
    assert reported == pytest.approx(expected)
    if schedule == "constant":
        assert reported == pytest.approx([1e-3] * 3)
    else:  # full rate at the end of the warm-up, then strictly down, never to 0 on a trained step
        assert reported[0] == pytest.approx(1e-3) and reported[0] > reported[1] > reported[2] > 0


@pytest.mark.parametrize("shared", [False, True])
def test_shared_group_noise_gives_a_group_one_start_and_its_own_sde_noise(tiny, grpo_config, tmp_path, shared):
    from flowopd.methods.grpo.trainer import GRPOTrainer

    cfg = grpo_config(shared_group_noise=shared)
    roll = GRPOTrainer(tiny(), cfg, tmp_path, resume=False).make_rollout(0, cfg.prompt_tasks)
    start, final = roll.latents[:, 0], roll.latents[:, -1]
    g = cfg.group_size
    for first in range(0, len(roll), g):
        same_start = [torch.equal(start[first], start[i]) for i in range(first + 1, first + g)]
        assert all(same_start) if shared else not any(same_start)
        assert not any(torch.equal(final[first], final[i]) for i in range(first + 1, first + g))
    assert not torch.equal(start[0], start[g])  # groups still start apart


def test_shared_group_noise_must_be_a_boolean(grpo_config):
    with pytest.raises(ValueError, match="shared_group_noise='yes' is invalid: use true or false"):
        grpo_config(shared_group_noise="yes")


def test_antithetic_noise_mirrors_the_sde_noise_of_pairs(tiny, grpo_config, tmp_path):
    from flowopd.methods.grpo.trainer import GRPOTrainer

    cfg = grpo_config(shared_group_noise=True, antithetic_noise=True)
    trainer = GRPOTrainer(tiny(), cfg, tmp_path, resume=False)
    roll = trainer.make_rollout(0, cfg.prompt_tasks)
    # A pair shares its start and prompt, so its first step has one mean; the two samples sit opposite it.
    for k in range(0, len(roll), 2):
        mean = trainer.transition(trainer.name, roll, [k, k + 1], 0).mean
        torch.testing.assert_close(mean[0], mean[1])
        torch.testing.assert_close(roll.latents[k, 1] - mean[0], -(roll.latents[k + 1, 1] - mean[0]),
                                   atol=1e-5, rtol=0)
        assert not torch.allclose(roll.latents[k, 1], roll.latents[k + 1, 1])


@pytest.mark.parametrize("fields", [{"group_size": 3, "batch_size": 12, "train_batch_size": 6},
                                    {"train_batch_size": 1}])
def test_antithetic_noise_needs_even_groups_and_micro_batches(grpo_config, fields):
    with pytest.raises(ValueError, match="antithetic_noise=True is invalid: it pairs images"):
        grpo_config(antithetic_noise=True, **fields)
