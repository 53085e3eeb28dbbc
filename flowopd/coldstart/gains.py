"""Merge weights in proportion to what each teacher learned (``merge_weighting = "gain"``; docs/method.md,
"Cold start").

Equal merge weights summing to 1 dilute every teacher's delta by the number of tasks, including the deltas
of teachers that learned nothing, which only interfere (docs/notes/merge-scale.md). ``gain`` spends the same
unit budget on the teachers that gained: each teacher's gain is its task reward's mean over the base's on the
same prompts and seeds, both sampled at the student's guidance (the merged delta will be sampled there: a
CFG-free teacher at its own 1.0 against the base at 3.0 would measure the guidance, not the teacher), and the
weights are the positive gains normalised to sum to 1.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping

import torch

from ..config.fields import task_reward
from ..evaluate import mean_task_reward
from ..models.base import FlowModel
from ..training.rollout import epoch_seed, sample_groups

log = logging.getLogger(__name__)


def gain_weights(gains: Mapping[str, float]) -> dict[str, float]:
    """Task -> merge weight: the positive gains, normalised to sum to 1 (a teacher that gained nothing gets 0);
    equal weights when no teacher gained.

    Example:
        >>> gain_weights({"text": 0.375, "prefer": 0.125, "compose": -0.02})
        {'text': 0.75, 'prefer': 0.25, 'compose': 0.0}
    """
    positive = {t: max(float(g), 0.0) for t, g in gains.items()}
    total = sum(positive.values())
    if total <= 0:
        log.warning("merge_weighting gain: no teacher gained over the base (%s); equal weights instead", dict(gains))
        return {t: 1 / len(gains) for t in gains}
    return {t: g / total for t, g in positive.items()}


@torch.no_grad()
def teacher_gains(model: FlowModel, teachers: Mapping[str, str], *, prompts: int, steps: int, guidance: float,
                  seed: int, task_rewards: Mapping[str, str] | None = None) -> dict[str, float]:
    """Each task's teacher's mean task reward minus the base's, on ``prompts`` train prompts of the task drawn
    with ``seed``, the same seeds for both (ODE, ``steps`` steps, both at ``guidance``, the student's).

    Args:
        teachers: task -> the teacher's adapter name on ``model``.
    """
    gains = {}
    for task, name in teachers.items():
        rng = random.Random(epoch_seed(seed, 0, 0, f"gain-{task}"))
        records = sample_groups({task: 1.0}, prompts, 1, rng)
        seeds = [rng.randrange(2**31) for _ in records]
        reward = task_reward(dict(task_rewards or {}), task)
        base, teacher = (mean_task_reward(model, adapter, records, seeds, reward=reward, steps=steps,
                                          guidance=guidance) for adapter in (None, name))
        gains[task] = teacher - base
    log.info("cold start: teacher gains over the base %s", ", ".join(f"{t} {g:+.3f}" for t, g in gains.items()))
    return gains
