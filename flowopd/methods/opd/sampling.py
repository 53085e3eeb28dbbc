"""Which tasks a distillation epoch samples, and how far apart the tasks pull the student (docs/method.md,
"Task sampling and gradient conflict"). Pure functions; :func:`gradient_cosines` needs torch.

* :func:`distance_weights`: prompt weights in proportion to each task's remaining distance to its teacher,
  ``max(R_teacher - R_student, 0)``, mixed with a uniform floor so that no task is dropped (a task the student
  has reached would otherwise vanish, and drift back);
* :func:`gradient_cosines`: the cosine between tasks' gradients on the shared LoRA: negative means the tasks
  pull the weights apart (the seesaw), positive that one task's step helps the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations


def distance_weights(student: Mapping[str, float], teacher: Mapping[str, float], floor: float) -> dict[str, float]:
    """Task -> sampling weight (summing to 1): ``floor / n + (1 - floor) gap_t / sum gaps`` with
    ``gap_t = max(teacher_t - student_t, 0)``; uniform when no task has a gap left.

    Example:
        >>> w = distance_weights({"text": 0.6, "prefer": 0.8}, {"text": 0.9, "prefer": 0.8}, floor=0.2)
        >>> round(w["text"], 3), round(w["prefer"], 3)
        (0.9, 0.1)
    """
    if not 0 <= floor <= 1:
        raise ValueError(f"floor={floor} must be in [0, 1]")
    tasks = list(teacher)
    if not tasks:
        raise ValueError("no teacher rewards: give each task's teacher reward")
    gaps = {t: max(float(teacher[t]) - float(student.get(t, teacher[t])), 0.0) for t in tasks}
    total = sum(gaps.values())
    if total <= 0:
        return {t: 1 / len(tasks) for t in tasks}
    return {t: floor / len(tasks) + (1 - floor) * gaps[t] / total for t in tasks}


def gradient_cosines(grads: Mapping[str, Sequence]) -> dict[str, float]:
    """``"a~b" -> cos(g_a, g_b)`` for every pair of tasks, each gradient a list of tensors (the LoRA's
    parameters) flattened into one vector; 0 where a gradient is zero.

    Example:
        >>> import torch
        >>> gradient_cosines({"a": [torch.tensor([1.0, 0.0])], "b": [torch.tensor([-1.0, 0.0])]})
        {'a~b': -1.0}
    """
    import torch

    flat = {t: torch.cat([g.detach().float().flatten() for g in gs]) for t, gs in grads.items()}
    out = {}
    for a, b in combinations(flat, 2):
        na, nb = flat[a].norm(), flat[b].norm()
        out[f"{a}~{b}"] = 0.0 if na == 0 or nb == 0 else float(flat[a] @ flat[b] / (na * nb))
    return out
