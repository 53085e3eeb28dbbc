"""Teacher routing of Flow-OPD's distillation (docs/method.md, "Routing"): which teacher's transition each sample
of a student rollout is pulled towards.

* ``per-sample`` (default): every sample one-hot to its prompt's task teacher (:func:`route_teachers`); a
  mixed prompt (several task labels) to its highest-weight task.
* ``alternate``: the released code's schedule, one task per epoch (:func:`alternate_task`), one-hot as above.
* ``blend``: the paper's ``v_target = sum_k alpha_k(c, x_t) v_phi_k``, which its released code never shipped:
  ``alpha_k`` are the prompt's task labels normalised to sum 1 (:func:`blend_routes`), and the target velocity
  is the alpha-weighted sum of its teachers' (:func:`blend_velocity`, which also says why that is the target).
  A single-task prompt gets weight 1 on its teacher, so ``blend`` differs from ``per-sample`` on mixed
  prompts only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import torch

from ...adapters import use_adapter
from ...models.base import FlowModel, PromptEmbeds
from ...world.prompts import primary_task, task_weights


def _no_teacher(missing: Collection[str], task_to_teacher: Mapping[str, str], prompt: str | None = None) -> ValueError:
    known = ", ".join(f"{t} -> {a}" for t, a in task_to_teacher.items()) or "none"
    where = f" of the mixed prompt {prompt!r} (blend needs a teacher for every task a prompt touches)" if prompt else ""
    return ValueError(f"no teacher for task(s) {sorted(missing)}{where}: teachers are {known}; add a teacher for "
                      "each task (teachers[TASK] = an adapter folder) or drop those prompts (prompt_tasks)")


def route_teachers(records: Sequence[Mapping], task_to_teacher: Mapping[str, str]) -> list[str]:
    """The one teacher adapter of every prompt record (one-hot routing, docs/method.md, "Routing"): its ``task``'s
    teacher; a mixed
    record (task labels ``tasks``) goes to its highest-weight task, ties to the earliest in ``TASKS``
    (:func:`flowopd.world.prompts.primary_task`: an even compose/text mix goes to compose).

    Example:
        >>> route_teachers([{"task": "text"}, {"task": "compose"}], {"compose": "t_c", "text": "t_t"})
        ['t_t', 't_c']
    """
    tasks = [primary_task(dict(r)) for r in records]
    missing = {t for t in tasks if t not in task_to_teacher}
    if missing:
        raise _no_teacher(missing, task_to_teacher)
    return [task_to_teacher[t] for t in tasks]


def blend_routes(records: Sequence[Mapping], task_to_teacher: Mapping[str, str]) -> list[dict[str, float]]:
    """Routing ``blend``: every record's teacher adapters with weights ``alpha_k``, its task labels normalised to
    sum 1 (:func:`flowopd.world.prompts.task_weights`; two tasks sharing an adapter add up). A single-task
    record gets its task's teacher with weight 1, so on such prompts ``blend`` is ``per-sample``.

    Example:
        >>> blend_routes([{"task": "mixed", "tasks": {"compose": 1, "text": 1}}, {"task": "text"}],
        ...              {"compose": "t_c", "text": "t_t"})
        [{'t_c': 0.5, 't_t': 0.5}, {'t_t': 1.0}]

    Raises:
        ValueError: a task of a record has no teacher; the message names the task, the prompt and the fix.
    """
    out = []
    for record in records:
        weights = task_weights(dict(record))
        missing = [t for t in weights if t not in task_to_teacher]
        if missing:
            raise _no_teacher(missing, task_to_teacher, record.get("prompt") if len(weights) > 1 else None)
        mix: dict[str, float] = {}
        for task, w in weights.items():
            mix[task_to_teacher[task]] = mix.get(task_to_teacher[task], 0.0) + w
        out.append(mix)
    return out


def alternate_task(epoch: int, epochs_per_task: Mapping[str, int]) -> str:
    """The task of ``epoch`` under the released code's alternate schedule (e.g. ``{"text": 1, "compose": 3}``).

    Example:
        >>> [alternate_task(e, {"text": 1, "compose": 3}) for e in range(5)]
        ['text', 'compose', 'compose', 'compose', 'text']
    """
    if not epochs_per_task or any(int(n) < 0 for n in epochs_per_task.values()) or sum(epochs_per_task.values()) < 1:
        raise ValueError(f"epochs_per_task {dict(epochs_per_task)} must give each task >= 0 epochs and >= 1 in all")
    k = epoch % sum(int(n) for n in epochs_per_task.values())
    for task, n in epochs_per_task.items():
        if k < int(n):
            return task
        k -= int(n)
    raise AssertionError("unreachable")


@torch.no_grad()
def guidance_of(guidance: float | Mapping[str | None, float], adapter: str | None) -> float:
    """The CFG scale ``adapter`` is queried at: ``guidance`` itself, or its entry in a mapping adapter -> scale
    (each teacher at its own; docs/method.md, "Guidance").

    Example:
        >>> guidance_of(3.0, "t"), guidance_of({"t": 1.0, None: 3.0}, "t"), guidance_of({None: 3.0}, None)
        (3.0, 1.0, 3.0)
    """
    if isinstance(guidance, Mapping):
        if adapter not in guidance:
            raise ValueError(f"no guidance for adapter {adapter!r}: give every routed adapter a scale")
        return float(guidance[adapter])
    return float(guidance)


def routed_velocity(model: FlowModel, teachers: Sequence[str | None | Mapping[str | None, float]], x: torch.Tensor,
                    sigma, cond: PromptEmbeds, uncond: PromptEmbeds | None = None,
                    guidance: float | Mapping[str | None, float] = 1.0) -> torch.Tensor:
    """Velocity [B, ...] of each sample's own adapter (``None``: the base), one forward per distinct adapter,
    each at its own guidance when ``guidance`` maps adapters to scales.

    Args:
        teachers: B adapter names, from :func:`route_teachers`; or B mappings adapter -> weight from
            :func:`blend_routes`, whose blend :func:`blend_velocity` computes.
        x: [B, ...] latents. sigma: float or [B]. cond, uncond: B prompt embeddings (uncond may be None).
        guidance: one CFG scale for every adapter, or adapter -> scale.
    """
    if any(isinstance(t, Mapping) for t in teachers):
        weights = [t if isinstance(t, Mapping) else {t: 1.0} for t in teachers]
        return blend_velocity(model, weights, x, sigma, cond, uncond, guidance)
    if len(teachers) != x.shape[0]:
        raise ValueError(f"got {len(teachers)} teacher names for a batch of {x.shape[0]}")
    out = torch.empty_like(x, dtype=torch.float32)
    sig = torch.as_tensor(sigma, dtype=torch.float32)
    for name in dict.fromkeys(teachers):
        idx = [i for i, t in enumerate(teachers) if t == name]
        s = sig[idx] if sig.ndim else sig
        with use_adapter(model, name):
            out[idx] = model.velocity(x[idx], s, cond.subset(idx), None if uncond is None else uncond.subset(idx),
                                      guidance_of(guidance, name))
    return out


def mix_targets(per_adapter: Mapping[str | None, torch.Tensor], weights: Sequence[Mapping[str | None, float]]
                ) -> torch.Tensor:
    """Row ``i`` of the result is ``sum_k weights[i][k] * per_adapter[k][i]``: the blended target [B, ...] of
    given per-teacher velocities or transition means (each [B, ...]); :func:`blend_velocity` computes the same
    with one forward per adapter on the rows that need it.

    Example:
        >>> mix_targets({"a": torch.zeros(2, 1), "b": torch.ones(2, 1)}, [{"a": 0.5, "b": 0.5}, {"b": 1.0}])
        tensor([[0.5000],
                [1.0000]])
    """
    first = next(iter(per_adapter.values()))
    out = torch.zeros_like(first, dtype=torch.float32)
    for i, row in enumerate(weights):
        for name, w in row.items():
            out[i] += float(w) * per_adapter[name][i].float()
    return out


@torch.no_grad()
def blend_velocity(model: FlowModel, weights: Sequence[Mapping[str | None, float]], x: torch.Tensor, sigma,
                   cond: PromptEmbeds, uncond: PromptEmbeds | None = None,
                   guidance: float | Mapping[str | None, float] = 1.0) -> torch.Tensor:
    """Routing ``blend``'s target velocity [B, ...]: ``v_i = sum_k alpha_ik v_k(x_i)`` (the paper's
    ``v_target = sum_k alpha_k(c, x_t) v_phi_k``), one forward per distinct adapter over the rows that need it.

    Why a blend of velocities is the right target: every transition of a step is ``N(mu(v), std_dev_t^2 |dt| I)``
    with the same covariance for every velocity, and ``mu(v) = x (1 + std^2 dt / (2 sigma)) + v (1 + std^2 (1 -
    sigma) / (2 sigma)) dt`` is affine in ``v``; with weights summing to 1, ``mu(sum_k alpha_k v_k) = sum_k
    alpha_k mu_k``. So the target is the single Gaussian ``N(sum_k alpha_k mu_k, std_dev_t^2 |dt| I)``, the
    teachers' mixture moment-matched in its mean with the shared covariance kept (a full moment match would
    widen it by the spread of the means), *not* the mixture ``sum_k alpha_k N(mu_k, .)`` itself, whose KL has
    no closed form. Its KL is the documented objective, and since ``sum_k alpha_k |mu_s - mu_k|^2 = |mu_s -
    mu_bar|^2 + sum_k alpha_k |mu_k - mu_bar|^2``, minimising it (``kl`` mode) has the same gradient as
    minimising the alpha-weighted sum of the KLs to each teacher: they differ by a constant of the teachers.

    Args:
        weights: B mappings adapter name (None: the base) -> weight, each summing to 1 (:func:`blend_routes`).
        x: [B, ...] latents. sigma: float or [B]. cond, uncond: B prompt embeddings (uncond may be None).

    Raises:
        ValueError: the weights do not match the batch, or a row's weights are negative or do not sum to 1.
    """
    if len(weights) != x.shape[0]:
        raise ValueError(f"got {len(weights)} teacher weightings for a batch of {x.shape[0]}")
    for i, row in enumerate(weights):
        if not row or any(w < 0 for w in row.values()) or abs(sum(row.values()) - 1) > 1e-6:
            raise ValueError(f"row {i}: teacher weights {dict(row)} must be >= 0 and sum to 1 (use blend_routes)")
    out = torch.zeros_like(x, dtype=torch.float32)
    sig = torch.as_tensor(sigma, dtype=torch.float32)
    for name in dict.fromkeys(n for row in weights for n, w in row.items() if w > 0):
        idx = [i for i, row in enumerate(weights) if row.get(name, 0.0) > 0]
        alpha = torch.tensor([float(weights[i][name]) for i in idx]).reshape(-1, *([1] * (x.ndim - 1)))
        with use_adapter(model, name):
            v = model.velocity(x[idx], sig[idx] if sig.ndim else sig, cond.subset(idx),
                               None if uncond is None else uncond.subset(idx), guidance_of(guidance, name))
        out[idx] += alpha * v.float()
    return out
