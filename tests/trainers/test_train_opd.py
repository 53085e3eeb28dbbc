"""The OPD trainer on the small random model: the KL to the teacher falls, routing is per sample, MAR, modes."""

from __future__ import annotations

import pytest
import torch

from flowopd.adapters import AdapterError, load_adapter, use_adapter
from flowopd.methods.opd.loss import kl_loss, transition
from flowopd.methods.opd.trainer import train_opd
from flowopd.sampling import sample, std_dev_t


def _kl_on_fixed_states(model, adapter: str | None, teacher: str, guidance: float = 3.0) -> float:
    """Mean 'uniform' KL between ``adapter`` and ``teacher`` over the states of a fixed base trajectory."""
    prompts = ["a red circle", "two blue squares", "a green triangle", "a photo of a square"]
    with torch.no_grad():
        cond, uncond = model.encode_prompts(prompts), model.uncond_embeds(len(prompts))
        with use_adapter(model, None):
            traj = sample(model, cond, seeds=[1, 2, 3, 4], num_steps=3, guidance=guidance, noise_level=0.7,
                          generator=torch.Generator().manual_seed(0))
        total = 0.0
        for j in range(2):
            s, s_next, x = float(traj.sigmas[j]), float(traj.sigmas[j + 1]), traj.latents[:, j]
            steps = {}
            for name in (adapter, teacher):
                with use_adapter(model, name):
                    steps[name] = transition(model.velocity(x, s, cond, uncond, guidance), x, s, s_next, 0.7,
                                             float(traj.sigmas[1]))
            std = std_dev_t(steps[adapter], s, s_next)
            total += kl_loss(steps[adapter].mean, steps[teacher].mean, std, "uniform", sigma=s,
                             sigma_next=s_next).mean().item()
    return total / 2


def test_a_few_steps_lower_the_kl_to_the_teacher(tiny, make_teachers, opd_config, tmp_path):
    model = tiny()
    teachers = make_teachers(model, {"compose": 1})
    load_adapter(model, teachers["compose"], "teacher_compose")  # train_opd loads it again under this name
    start = _kl_on_fixed_states(model, None, "teacher_compose")  # a fresh student equals the base
    seen = []
    train_opd(model, opd_config(teachers, epochs=5, lr=1e-2, weighting="uniform", beta_mar=0.0), tmp_path,
              callback=seen.append)

    assert _kl_on_fixed_states(model, "student", "teacher_compose") < 0.5 * start
    assert [m["step"] for m in seen] == [2, 4, 6, 8, 10]
    assert seen[-1]["kl/teacher"] < seen[0]["kl/teacher"]
    assert {"kl/teacher/step_0", "kl/teacher/step_1", "kl/teacher/compose"} <= set(seen[0])


def test_every_sample_goes_to_its_tasks_teacher(tiny, make_teachers, opd_config, tmp_path, monkeypatch):
    import flowopd.methods.opd.trainer as trainer

    routes, calls = [], []
    real_route, real_velocity = trainer.route_teachers, trainer.routed_velocity
    monkeypatch.setattr(trainer, "route_teachers", lambda records, m: routes.append(
        (list(records), real_route(records, m))) or routes[-1][1])
    monkeypatch.setattr(trainer, "routed_velocity", lambda model, names, *a, **k: calls.append(list(names))
                        or real_velocity(model, names, *a, **k))
    model = tiny()
    teachers = make_teachers(model, {"compose": 1, "prefer": 2})
    train_opd(model, opd_config(teachers, batch_size=16, group_size=2, train_batch_size=8,
                                optimizer_steps_per_epoch=1), tmp_path)

    (records, names), = routes
    assert names == [f"teacher_{r['task']}" for r in records]
    assert {r["task"] for r in records} == {"compose", "prefer"}  # mixed prompts in one epoch
    assert calls[0] + calls[2] == names  # micro-batches of 8 rows, at j = 0, 1 each
    assert any(len(set(c)) == 2 for c in calls)  # one forward per teacher inside a mixed micro-batch


def test_alternate_routing_gives_each_epoch_one_task(tiny, make_teachers, opd_config, tmp_path, monkeypatch):
    import flowopd.methods.opd.trainer as trainer

    tasks = []
    real_route = trainer.route_teachers
    monkeypatch.setattr(trainer, "route_teachers", lambda records, m: tasks.append(
        {r["task"] for r in records}) or real_route(records, m))
    model = tiny()
    teachers = make_teachers(model, {"compose": 1, "prefer": 2})
    train_opd(model, opd_config(teachers, epochs=3, routing="alternate", epochs_per_task={"prefer": 1, "compose": 2},
                                optimizer_steps_per_epoch=1, num_steps=2), tmp_path)
    assert tasks == [{"prefer"}, {"compose"}, {"compose"}]


def test_mar_towards_the_base_and_towards_a_teacher(tiny, make_teachers, opd_config, tmp_path):
    model = tiny()
    teachers = make_teachers(model, {"compose": 1, "prefer": 2})
    one_step = dict(optimizer_steps_per_epoch=1, train_batch_size=8)
    seen = []
    train_opd(model, opd_config(teachers, beta_mar=0.5, **one_step), tmp_path / "base", callback=seen.append)
    m = seen[-1]
    # Before its first update the fresh student *is* the base: the anchor term is exactly zero.
    assert m["kl/anchor"] == 0.0 and m["kl/anchor/step_0"] == 0.0 and m["kl/anchor/step_1"] == 0.0
    assert m["loss"] == pytest.approx(m["kl/teacher"], rel=1e-5)

    train_opd(model, opd_config(teachers, beta_mar=0.5, mar_anchor="prefer", **one_step), tmp_path / "teacher",
              callback=seen.append, resume=False)
    m = seen[-1]
    assert m["kl/anchor"] > 0
    assert m["loss"] == pytest.approx(m["kl/teacher"] + 0.5 * m["kl/anchor"], rel=1e-4)

    # An adapter folder as the anchor: loaded as its own adapter, the same anchor as the prefer teacher's.
    train_opd(model, opd_config(teachers, beta_mar=0.5, mar_anchor=teachers["prefer"], **one_step),
              tmp_path / "folder", callback=seen.append, resume=False)
    assert seen[-1]["kl/anchor"] == pytest.approx(m["kl/anchor"], rel=1e-6)
    assert "anchor" in model.transformer.peft_config

    train_opd(model, opd_config(teachers, beta_mar=0.0, **one_step), tmp_path / "off", callback=seen.append)
    assert not any(k.startswith("kl/anchor") for k in seen[-1])


@pytest.mark.parametrize("kl_norm", ["per-sample", "per-timestep", "per-task", "global"])
def test_kl_norm_trains_and_divides_by_the_previous_epochs_means(tiny, make_teachers, opd_config, tmp_path,
                                                                  monkeypatch, kl_norm):
    from flowopd.methods.opd import loss

    model = tiny()
    teachers = make_teachers(model, {"compose": 1, "prefer": 2})
    divisor, used = loss.kl_divisor, []
    monkeypatch.setattr(loss, "kl_divisor", lambda *a, **k: used.append(dict(k["scales"])) or divisor(*a, **k))
    seen = []
    train_opd(model, opd_config(teachers, epochs=3, lr=1e-2, kl_norm=kl_norm), tmp_path, callback=seen.append)
    assert seen[-1]["kl/teacher"] < seen[0]["kl/teacher"]
    assert used[0] == {}  # the first epoch has no previous one: each micro-batch's own means
    first = {k: v for k, v in seen[0].items() if k == "kl/teacher" or k.startswith("kl/teacher/")}
    assert first and first in used and used[-1] == {k: v for k, v in seen[1].items() if k in used[-1]}


@pytest.mark.parametrize("mode", ["pg", "paper"])
def test_other_loss_modes_train(tiny, make_teachers, opd_config, tmp_path, mode):
    model = tiny()
    teachers = make_teachers(model, {"prefer": 1})
    result = train_opd(model, opd_config(teachers, loss_mode=mode, weighting="paper", log_rewards=True,
                                         mask_zero_std=True), tmp_path)
    assert result.step == 2 and all(v == v for v in result.metrics.values())  # no NaN
    assert "reward/prefer" in result.metrics


def test_bad_teachers_and_anchors_fail_clearly(tiny, make_teachers, opd_config, tmp_path):
    model = tiny()
    foreign = make_teachers(tiny(seed=1), {"compose": 1})  # trained on another base model
    with pytest.raises(AdapterError, match=r"teachers\['compose'\]='.*': adapter .* was trained on base model .* "
                                           r"but this model is"):
        train_opd(model, opd_config(foreign), tmp_path)
    own = make_teachers(model, {"prefer": 2})  # its own folder: the foreign compose teacher stays
    with pytest.raises(AdapterError, match=r"^init='.*': adapter .* was trained on base model"):
        train_opd(model, opd_config(own, init=foreign["compose"]), tmp_path / "init")
    with pytest.raises(AdapterError, match=r"^mar_anchor='.*': adapter .* was trained on base model"):
        train_opd(model, opd_config(own, mar_anchor=foreign["compose"]), tmp_path / "anchor")
    teachers = make_teachers(model, {"compose": 1})
    with pytest.raises(ValueError, match=r"mar_anchor='nowhere' is invalid: use 'base', a teacher's task \(compose\)"):
        train_opd(model, opd_config(teachers, mar_anchor="nowhere"), tmp_path)
    with pytest.raises(ValueError, match=r"loss_mode='gkd' is invalid: use one of kl, pg, paper"):
        opd_config(teachers, loss_mode="gkd")
    with pytest.raises(ValueError, match=r"routing='soft' is invalid: use one of per-sample, alternate"):
        opd_config(teachers, routing="soft")


def test_task_rewards_choose_the_reward_that_scores_a_task(tiny, make_teachers, opd_config, tmp_path):
    from flowopd.methods.opd.config import OPDConfig

    model = tiny()
    teachers = make_teachers(model, {"prefer": 1})
    result = train_opd(model, opd_config(teachers, log_rewards=True, task_rewards={"prefer": "quality"}), tmp_path)
    assert "reward/quality" in result.metrics and "reward/prefer" not in result.metrics  # prefer prompts, quality
    assert OPDConfig.sd35_medium(teachers={"text": "t"}, prompt_tasks={"text": 1.0}).task_rewards["text"] == "ocr"
    with pytest.raises(ValueError, match="task_rewards.*'lettering' is not a task"):
        OPDConfig(teachers={"text": "t"}, prompt_tasks={"text": 1.0}, task_rewards={"lettering": "ocr"})
    with pytest.raises(ValueError, match="task_rewards.*clipscore"):
        OPDConfig(teachers={"text": "t"}, prompt_tasks={"text": 1.0}, task_rewards={"text": "clipscore"})
