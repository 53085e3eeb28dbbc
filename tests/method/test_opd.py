"""Distillation losses, routing and a few on-policy distillation steps on the tiny model."""

from __future__ import annotations

import pytest
import torch

from flowopd.adapters import add_lora, trainable_parameters, use_adapter
from flowopd.methods.opd.loss import (
    alternate_task,
    distill_step_loss,
    kl_loss,
    paper_loss,
    paper_weight,
    pg_loss,
    route_teachers,
    routed_velocity,
    transition,
    transition_mean,
)
from flowopd.sampling import sample, sigma_schedule, std_dev_t

NOISE = 0.7


@pytest.fixture
def student_teacher(model, randomise):
    add_lora(model, "student", rank=4, alpha=8)
    add_lora(model, "teacher", rank=4, alpha=8)
    randomise(model, "teacher", std=0.2)
    return model


def means(model, x, cond, sigma, sigma_next, name, grad=False):
    with torch.set_grad_enabled(grad), use_adapter(model, name):
        v = model.velocity(x, sigma, cond)
    return transition_mean(v, x, sigma, sigma_next, NOISE, None)


def step_std(sigma, sigma_next):
    x = torch.zeros(1, 1)
    return std_dev_t(transition(x, x, sigma, sigma_next, NOISE, None), sigma, sigma_next)


def test_kl_is_zero_for_equal_transitions_and_positive_otherwise(student_teacher, batch):
    model, (x, cond) = student_teacher, batch
    std = step_std(0.6, 0.4)
    mu_s = means(model, x, cond, 0.6, 0.4, "student")
    mu_base = means(model, x, cond, 0.6, 0.4, None)
    mu_t = means(model, x, cond, 0.6, 0.4, "teacher")
    for weighting in ("code", "paper", "uniform"):
        assert torch.equal(kl_loss(mu_s, mu_base, std, weighting, sigma=0.6, sigma_next=0.4), torch.zeros(4))
        assert (kl_loss(mu_s, mu_t, std, weighting, sigma=0.6, sigma_next=0.4) > 0).all()


def test_weightings_match_their_velocity_forms():
    torch.manual_seed(0)
    x, v_s, v_t = torch.randn(3, 2, 3, 4, 4)
    sigma, sigma_next = 0.6, 0.45
    mu_s = transition_mean(v_s, x, sigma, sigma_next, NOISE, None)
    mu_t = transition_mean(v_t, x, sigma, sigma_next, NOISE, None)
    std = step_std(sigma, sigma_next)
    dv2 = ((v_s - v_t) ** 2).mean((1, 2, 3))
    kw = dict(sigma=sigma, sigma_next=sigma_next)
    torch.testing.assert_close(kl_loss(mu_s, mu_t, std, "uniform", **kw), dv2)
    w = paper_weight(sigma, sigma_next, float(std.reshape(-1)[0]))
    torch.testing.assert_close(kl_loss(mu_s, mu_t, std, "paper", **kw), w * dv2)
    code = kl_loss(mu_s, mu_t, std, "code")
    torch.testing.assert_close(code, (sigma - sigma_next) * w * dv2)  # the code's KL lacks |dt|
    with pytest.raises(ValueError, match="unknown weighting 'sum': use one of code, paper, uniform"):
        kl_loss(mu_s, mu_t, std, "sum")
    with pytest.raises(ValueError, match="std_dev_t > 0"):
        kl_loss(mu_s, mu_t, 0.0, "code")


def test_a_gradient_step_moves_the_student_mean_towards_the_teacher(student_teacher, batch):
    model, (x, cond) = student_teacher, batch
    params = trainable_parameters(model, "student")
    std = step_std(0.3, 0.1)
    mu_t = means(model, x, cond, 0.3, 0.1, "teacher")
    mu_s = means(model, x, cond, 0.3, 0.1, "student", grad=True)
    before = (mu_s - mu_t).pow(2).sum().item()
    kl_loss(mu_s, mu_t, std).mean().backward()
    with torch.no_grad():
        for p in params:
            p -= 1e-2 * p.grad
    after = (means(model, x, cond, 0.3, 0.1, "student") - mu_t).pow(2).sum().item()
    assert after < before


def test_paper_mode_has_zero_expected_gradient_and_pg_points_to_the_teacher():
    """A 1-D Gaussian policy N(theta, 1) at theta = 0, teacher N(1, 1), 20k sampled actions."""
    torch.manual_seed(0)
    theta = torch.zeros(1, requires_grad=True)
    a = torch.randn(20000)
    log_prob = -((a - theta) ** 2) / 2
    old = log_prob.detach()
    (g_paper,) = torch.autograd.grad(paper_loss(log_prob, old, torch.full((20000,), 0.5), clip_range=1.0), theta,
                                     retain_graph=True)
    assert abs(g_paper.item()) < 0.02  # noise only: 0.5 * std(a) / sqrt(n) ~ 0.004
    teacher = -((a - 1) ** 2) / 2
    (g_pg,) = torch.autograd.grad(pg_loss(log_prob, old, teacher, clip_range=1.0), theta)
    assert g_pg.item() < -0.5  # descending the loss raises theta towards the teacher's mean (expected -1)


def test_distill_step_loss_modes_and_mar(student_teacher, batch):
    model, (x, cond) = student_teacher, batch
    trainable_parameters(model, "student")
    with torch.no_grad(), use_adapter(model, "student"):
        step = transition(model.velocity(x, 0.6, cond), x, 0.6, 0.4, NOISE, None)
    with use_adapter(model, "student"):
        student = transition(model.velocity(x, 0.6, cond), x, 0.6, 0.4, NOISE, None, prev_sample=step.sample)
    with torch.no_grad(), use_adapter(model, "teacher"):
        teacher = transition(model.velocity(x, 0.6, cond), x, 0.6, 0.4, NOISE, None, prev_sample=step.sample)
    anchor = means(model, x, cond, 0.6, 0.4, None)
    std = std_dev_t(student, 0.6, 0.4)
    for mode in ("kl", "pg", "paper"):
        out = distill_step_loss(mode, student, teacher, step.log_prob, std, anchor_mean=anchor, beta_mar=0.5)
        assert out.loss.requires_grad and torch.isfinite(out.loss)
        assert (out.kl_teacher > 0).all() and torch.equal(out.kl_anchor, torch.zeros(4))  # student == base
    plain = distill_step_loss("kl", student, teacher, step.log_prob, std)
    assert plain.kl_anchor is None and plain.loss.item() == pytest.approx(plain.kl_teacher.mean().item())
    with pytest.raises(ValueError, match="unknown loss mode 'gkd': use one of kl, pg, paper"):
        distill_step_loss("gkd", student, teacher, step.log_prob, std)


def test_routing_per_sample_and_alternate():
    records = [{"task": "text"}, {"task": "compose"}, {"task": "text"}]
    assert route_teachers(records, {"compose": "t_c", "text": "t_t"}) == ["t_t", "t_c", "t_t"]
    with pytest.raises(ValueError, match=r"no teacher for task\(s\) \['prefer'\]: teachers are compose -> t_c"):
        route_teachers(records + [{"task": "prefer"}], {"compose": "t_c", "text": "t_t"})
    assert [alternate_task(e, {"text": 1, "compose": 3}) for e in range(8)] == ["text"] + ["compose"] * 3 + \
        ["text"] + ["compose"] * 3
    with pytest.raises(ValueError, match="epochs_per_task"):
        alternate_task(0, {"text": 0})


def test_routed_velocity_uses_each_samples_teacher(model, batch, randomise):
    for name, seed in (("t_c", 1), ("t_t", 2)):
        add_lora(model, name, rank=4, alpha=8)
        randomise(model, name, seed=seed)
    x, cond = batch
    uncond = model.uncond_embeds(len(x))
    with torch.no_grad():
        uncond = type(uncond)(uncond.seq.detach(), uncond.pooled.detach())
    teachers = route_teachers([{"task": t} for t in ("text", "compose", "text", "compose")],
                              {"compose": "t_c", "text": "t_t"})
    sig = torch.tensor([0.9, 0.7, 0.5, 0.3])
    routed = routed_velocity(model, teachers, x, sig, cond, uncond, guidance=3.0)
    for name in ("t_c", "t_t"):
        with torch.no_grad(), use_adapter(model, name):
            full = model.velocity(x, sig, cond, uncond, 3.0)
        rows = [i for i, t in enumerate(teachers) if t == name]
        torch.testing.assert_close(routed[rows], full[rows], rtol=1e-5, atol=1e-5)


def kl_over_trajectory(model, traj, cond, grad: bool) -> torch.Tensor:
    """Mean code-scale KL of student to teacher over the first N-1 steps of ``traj`` (Flow-GRPO's 0.99 fraction)."""
    sigmas = traj.sigmas
    sigma_max = float(sigmas[(sigmas < 1) & (sigmas > 0)].max())
    total = 0.0
    for j in range(len(sigmas) - 2):
        x, s, s_next = traj.latents[:, j], sigmas[j], sigmas[j + 1]
        with torch.no_grad(), use_adapter(model, "teacher"):
            teacher = transition(model.velocity(x, s, cond), x, s, s_next, NOISE, sigma_max)
        with torch.set_grad_enabled(grad), use_adapter(model, "student"):
            student = transition(model.velocity(x, s, cond), x, s, s_next, NOISE, sigma_max)
        total = total + kl_loss(student.mean, teacher.mean, std_dev_t(student, s, s_next)).mean()
    return total / (len(sigmas) - 2)


def test_a_few_opd_kl_steps_lower_the_kl_to_the_teacher(student_teacher, batch):
    model, (_, cond) = student_teacher, batch
    opt = torch.optim.Adam(trainable_parameters(model, "student"), lr=1e-2)
    gen = torch.Generator().manual_seed(0)

    def rollout(seed: int):
        with use_adapter(model, "student"):
            return sample(model, cond, seeds=list(range(seed, seed + len(cond))), num_steps=5, guidance=1.0,
                          noise_level=NOISE, generator=gen)

    held_out = rollout(1000)
    before = kl_over_trajectory(model, held_out, cond, grad=False).item()
    for it in range(12):
        traj = rollout(10 * it)  # on-policy: fresh student samples every step
        opt.zero_grad()
        kl_over_trajectory(model, traj, cond, grad=True).backward()
        opt.step()
    after = kl_over_trajectory(model, held_out, cond, grad=False).item()
    assert after < 0.5 * before, (before, after)
    assert sigma_schedule(5, model.shift)[0] == 1.0  # the rollouts start at pure noise (sigma_max path used)
