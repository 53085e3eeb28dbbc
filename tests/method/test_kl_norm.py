"""KL normalisation (``kl_norm``): the divisors on hand-made KLs, and what they do to the loss's gradient."""

from __future__ import annotations

import pytest
import torch

from flowopd.methods.opd.config import OPDConfig
from flowopd.methods.opd.loss import distill_step_loss, kl_divisor, kl_scales
from flowopd.sampling import SDEStep

KL = torch.tensor([1.0, 3.0, 0.5, 0.5])
TASKS = ["text", "text", "prefer", "compose"]


def test_divisors_on_hand_made_kls():
    assert torch.equal(kl_divisor(KL, "none"), torch.ones(4))
    assert torch.equal(kl_divisor(KL, "per-sample"), KL)
    # no scales yet (the first epoch): the micro-batch's own means
    assert torch.allclose(kl_divisor(KL, "per-timestep", step=2), torch.full((4,), 1.25))
    assert torch.allclose(kl_divisor(KL, "global"), torch.full((4,), 1.25))
    assert torch.allclose(kl_divisor(KL, "per-task", tasks=TASKS), torch.tensor([2.0, 2.0, 0.5, 0.5]))
    # the previous epoch's means, by metric name, win over the micro-batch's
    scales = {"kl/teacher": 4.0, "kl/teacher/step_2": 0.25, "kl/teacher/text": 8.0}
    assert torch.allclose(kl_divisor(KL, "per-timestep", step=2, scales=scales), torch.full((4,), 0.25))
    assert torch.allclose(kl_divisor(KL, "per-timestep", step=1, scales=scales), torch.full((4,), 1.25))
    assert torch.allclose(kl_divisor(KL, "global", scales=scales), torch.full((4,), 4.0))
    assert torch.allclose(kl_divisor(KL, "per-task", tasks=TASKS, scales=scales), torch.tensor([8.0, 8.0, 0.5, 0.5]))
    assert kl_divisor(torch.zeros(2), "per-sample").min() > 0  # a matched sample does not divide by zero


def test_bad_kl_norm_arguments_fail_clearly():
    with pytest.raises(ValueError, match="unknown kl_norm 'task': use one of none, per-sample"):
        kl_divisor(KL, "task")
    with pytest.raises(ValueError, match="per-task kl_norm needs a task per sample: 2 tasks for 4 samples"):
        kl_divisor(KL, "per-task", tasks=["a", "b"])
    with pytest.raises(ValueError, match="kl_norm.*use loss_mode 'kl'"):
        OPDConfig(teachers={"text": "t"}, prompt_tasks={"text": 1.0}, loss_mode="pg", kl_norm="per-task").check()


def test_scales_are_the_epochs_teacher_kl_means():
    metrics = {"kl/teacher": 0.5, "kl/teacher/step_0": 0.1, "kl/teacher/text": 0.2, "kl/anchor": 9.0, "loss": 1.0}
    assert kl_scales(metrics) == {"kl/teacher": 0.5, "kl/teacher/step_0": 0.1, "kl/teacher/text": 0.2}


def _steps(d: torch.Tensor):
    """A student whose transition means are ``d`` away from a zero teacher's (one dimension per sample)."""
    mean = d.clone().requires_grad_(True)
    zeros = torch.zeros_like(d)
    student, teacher = SDEStep(zeros, zeros, mean, zeros), SDEStep(zeros, zeros, zeros, zeros)
    return mean, student, teacher


def test_per_task_normalisation_gives_each_task_the_same_pull():
    """Text's error is 10x prefer's: plain KL pulls text 10x harder; per-task KL pulls each task's mean alike."""
    d = torch.tensor([[1.0], [1.0], [0.1], [0.1]])  # two text rows far from their teacher, two prefer rows near
    tasks, std = ["text", "text", "prefer", "prefer"], torch.tensor(1.0)
    grads = {}
    for norm in ("none", "per-task", "per-sample"):
        mean, student, teacher = _steps(d)
        out = distill_step_loss("kl", student, teacher, torch.zeros(4), std, kl_norm=norm, tasks=tasks)
        (grads[norm],) = torch.autograd.grad(out.loss, mean)
        assert torch.allclose(out.kl_teacher, (d**2 / 2).squeeze(1))  # the logged KL is never normalised
    # d(d^2/2)/dd = d: plain gradients are proportional to the error
    assert torch.allclose(grads["none"].squeeze(1), torch.tensor([1.0, 1.0, 0.1, 0.1]) / 4)
    # divided by its task's mean KL (0.5 and 0.005): d / (d^2/2) = 2 / d, so the near task's *relative* error
    # is what pulls; each row's gradient times its error is the same 2/4 on every row
    assert torch.allclose((grads["per-task"] * d).squeeze(1), torch.full((4,), 0.5))
    assert torch.allclose(grads["per-task"], grads["per-sample"])  # equal KLs within each task
    with pytest.raises(ValueError, match="kl_norm divides the analytic KL: it needs loss_mode 'kl', not 'pg'"):
        distill_step_loss("pg", student, teacher, torch.zeros(4), std, kl_norm="per-task", tasks=tasks)


def test_mar_is_divided_by_the_same_scale():
    d = torch.tensor([[2.0], [2.0]])
    mean, student, teacher = _steps(d)
    out = distill_step_loss("kl", student, teacher, torch.zeros(2), torch.tensor(1.0), anchor_mean=torch.zeros(2, 1),
                            beta_mar=0.5, kl_norm="global", kl_scales={"kl/teacher": 4.0})
    # KL to the teacher and to the (equal) anchor are both 2 per row: (2 + 0.5 * 2) / 4
    assert out.loss.item() == pytest.approx(0.75)
