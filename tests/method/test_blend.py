"""Blended routing (the paper's alpha_k(c, x_t)): targets on hand-made teacher means, the routes of mixed and
single-task prompts, the blended velocity on the tiny model, and the config's checks."""

from __future__ import annotations

import pytest
import torch

from flowopd.adapters import add_lora, use_adapter
from flowopd.methods.opd.config import OPDConfig
from flowopd.methods.opd.loss import (
    blend_routes,
    blend_velocity,
    mix_targets,
    route_teachers,
    routed_velocity,
    transition_mean,
)

TEACHERS = {"compose": "t_c", "text": "t_t"}
MIXED = {"prompt": 'a sign that says "AK" and two red circles', "task": "mixed", "tasks": {"compose": 0.5, "text": 0.5}}


def test_blended_targets_of_hand_made_teacher_means():
    means = {"t_c": torch.full((3, 2, 2), 1.0), "t_t": torch.full((3, 2, 2), 3.0)}
    means["t_t"][2] = -5.0
    got = mix_targets(means, [{"t_c": 0.5, "t_t": 0.5}, {"t_c": 1.0, "t_t": 0.0}, {"t_t": 1.0}])
    assert torch.equal(got[0], torch.full((2, 2), 2.0))  # 0.5 / 0.5: the average
    assert torch.equal(got[1], means["t_c"][1])  # 1 / 0: the one teacher
    assert torch.equal(got[2], means["t_t"][2])  # a single-task row: its teacher, as per-sample routing
    skew = mix_targets(means, [{"t_c": 0.25, "t_t": 0.75}] * 3)
    torch.testing.assert_close(skew[0], torch.full((2, 2), 2.5))


def test_mixing_velocities_mixes_the_transition_means():
    """The transition mean is affine in the velocity, so a blend of velocities has the blend of the means."""
    g = torch.Generator().manual_seed(0)
    x, v1, v2 = (torch.randn(4, 3, 8, 8, generator=g) for _ in range(3))
    weights = [{"a": 0.5, "b": 0.5}, {"a": 0.2, "b": 0.8}, {"a": 1.0}, {"b": 1.0}]
    for sigma, sigma_next in ((1.0, 0.96), (0.6, 0.46), (0.28, 0.0)):
        m1, m2, blended = (transition_mean(v, x, sigma, sigma_next, 0.7, 0.96)
                           for v in (v1, v2, mix_targets({"a": v1, "b": v2}, weights)))
        torch.testing.assert_close(blended, mix_targets({"a": m1, "b": m2}, weights))


def test_routes_of_mixed_and_single_task_prompts():
    records = [MIXED, {"task": "text"}, {"task": "mixed", "tasks": {"compose": 1, "text": 3}}]
    assert blend_routes(records, TEACHERS) == [{"t_c": 0.5, "t_t": 0.5}, {"t_t": 1.0}, {"t_c": 0.25, "t_t": 0.75}]
    # One-hot routing sends a mixed prompt to its highest-weight task, an even mix to the first of TASKS.
    assert route_teachers(records, TEACHERS) == ["t_c", "t_t", "t_t"]
    # Two tasks with one teacher folder: one adapter, the weights add up.
    assert blend_routes([MIXED], {"compose": "t", "text": "t"}) == [{"t": 1.0}]
    with pytest.raises(ValueError, match=r"no teacher for task\(s\) \['text'\] of the mixed prompt 'a sign that says "
                                         r"\"AK\" and two red circles' \(blend needs a teacher for every task a prompt "
                                         r"touches\): teachers are compose -> t_c; add a teacher for each task"):
        blend_routes([MIXED], {"compose": "t_c"})
    with pytest.raises(ValueError, match=r"no teacher for task\(s\) \['prefer'\]: teachers are compose -> t_c"):
        blend_routes([{"task": "prefer"}], TEACHERS)


@pytest.fixture
def two_teachers(model, randomise):
    for name, seed in (("t_c", 1), ("t_t", 2)):
        add_lora(model, name, rank=4, alpha=8)
        randomise(model, name, seed=seed)
    return model


def test_blend_velocity_on_the_tiny_model(two_teachers, batch):
    model, (x, cond) = two_teachers, batch
    uncond = model.uncond_embeds(len(x))
    uncond = type(uncond)(uncond.seq.detach(), uncond.pooled.detach())
    sig = torch.tensor([0.9, 0.7, 0.5, 0.3])
    full = {}
    for name in ("t_c", "t_t"):
        with torch.no_grad(), use_adapter(model, name):
            full[name] = model.velocity(x, sig, cond, uncond, 3.0)
    weights = [{"t_c": 0.5, "t_t": 0.5}, {"t_t": 1.0}, {"t_c": 0.3, "t_t": 0.7}, {"t_c": 1.0}]
    blended = blend_velocity(model, weights, x, sig, cond, uncond, 3.0)
    torch.testing.assert_close(blended, mix_targets(full, weights), rtol=1e-5, atol=1e-5)
    # Single-task rows: exactly per-sample routing's velocity; routed_velocity takes blend routes too.
    one_hot = routed_velocity(model, ["t_c", "t_t", "t_t", "t_c"], x, sig, cond, uncond, 3.0)
    as_blend = blend_velocity(model, [{"t_c": 1.0}, {"t_t": 1.0}, {"t_t": 1.0}, {"t_c": 1.0}], x, sig, cond, uncond,
                              3.0)
    assert torch.equal(one_hot, as_blend)
    assert torch.equal(routed_velocity(model, weights, x, sig, cond, uncond, 3.0), blended)
    with pytest.raises(ValueError, match=r"row 0: teacher weights \{'t_c': 0.5\} must be >= 0 and sum to 1"):
        blend_velocity(model, [{"t_c": 0.5}] * 4, x, sig, cond)
    with pytest.raises(ValueError, match="got 1 teacher weightings for a batch of 4"):
        blend_velocity(model, [{"t_c": 1.0}], x, sig, cond)


def test_config_routing_blend_and_mixed_prompts():
    teachers = {"compose": "a", "text": "b"}
    cfg = OPDConfig(teachers=teachers, prompt_tasks={"compose": 1.0, "mixed": 1.0}, routing="blend")
    assert cfg.routing == "blend" and OPDConfig.from_json(cfg.to_json()) == cfg
    OPDConfig(teachers=teachers, prompt_tasks={"mixed": 1.0})  # per-sample routes them one-hot (to compose)
    with pytest.raises(ValueError, match=r"teachers=\{'compose': 'a'\} is invalid: the 'mixed' prompts touch compose, "
                                         r"text, and \['text'\] have no teacher: add teachers\['text'\] or drop "
                                         r"'mixed' from prompt_tasks"):
        OPDConfig(teachers={"compose": "a"}, prompt_tasks={"compose": 1.0, "mixed": 1.0}, routing="blend")
    with pytest.raises(ValueError, match=r"routing='soft' is invalid: use one of per-sample, alternate, blend"):
        OPDConfig(teachers=teachers, prompt_tasks={"compose": 1.0}, routing="soft")
    with pytest.raises(ValueError, match=r"prompt_tasks=.* 'painting' is not a task or prompt set; use names from "
                                         r"compose, text, prefer, quality, mixed"):
        OPDConfig(teachers=teachers, prompt_tasks={"painting": 1.0}, routing="blend")
