"""Flow-OPD's distillation losses (docs/method.md, "On-policy distillation", "Routing", "MAR"); the teacher routing is
re-exported from
:mod:`flowopd.methods.opd.routing`.

Per denoising step j of a student-sampled SDE trajectory, student and teacher define Gaussian transitions
``N(mu, std_dev_t^2 |dt| I)`` of equal covariance, so the reverse KL is analytic in the means.
Loss modes (:data:`LOSS_MODES`):

* ``kl`` (default): the analytic KL itself, minimised with its gradient; the released code's effective
  objective (its ``kl_only`` mode differs by a zero-mean term, its ``gkd`` mode is this exactly).
* ``pg``: LLM-style on-policy distillation: the detached sampled log-ratio
  ``log pi_T(x_next|x) - log pi_old(x_next|x)`` (expectation: minus the KL) is the advantage of the PPO
  clipped objective.
* ``paper``: the paper's literal objective: the *detached* analytic KL as a reward times the ratio. The KL
  at state x does not depend on the action x_next, and ``E_{a~pi}[grad log pi(a)] = 0``, so its expected
  gradient is zero: it only adds noise. Kept for fidelity, not for use.

MAR (Manifold Anchor Regularization) is :func:`kl_loss` towards an anchor's mean, on all samples.

``kl_norm`` (:func:`kl_divisor`) divides each sample's KL (and its MAR term, so that ``beta_mar`` keeps its
meaning) by a detached scale: ``per-sample`` its own KL, ``per-timestep`` the step's mean KL, ``per-task`` its
task's mean KL, ``global`` the mean KL; the scales come from the previous epoch (the first epoch's from the
micro-batch itself), so every step, task or sample pulls with the same relative force whatever its KL's size.

Teacher routing (``per-sample``, ``alternate``, ``blend``) lives in :mod:`.routing`; its public names are
re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ... import metric_names as names
from ...config.choices import KL_NORMS, LOSS_MODES, WEIGHTINGS
from ...sampling import SDEStep, sde_step
from ..grpo.loss import clipped_objective
from .routing import (
    alternate_task,
    blend_routes,
    blend_velocity,
    mix_targets,
    route_teachers,
    routed_velocity,
)

__all__ = ["StepLoss", "alternate_task", "blend_routes", "blend_velocity", "check_choice", "distill_step_loss",
           "kl_divisor", "kl_loss", "kl_scales", "mix_targets", "paper_loss", "paper_weight", "pg_loss",
           "route_teachers", "routed_velocity", "transition", "transition_mean"]


def check_choice(kind: str, value: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError naming the kind and the choices."""
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}: use one of {', '.join(choices)}")
    return value


def transition(v: torch.Tensor, x: torch.Tensor, sigma, sigma_next, noise_level: float,
               sigma_max: float | None, prev_sample: torch.Tensor | None = None) -> SDEStep:
    """The SDE transition of velocity ``v`` at ``x`` [B, ...] (``flowopd.sampling.sde_step``), scored at
    ``prev_sample`` when given."""
    return sde_step(v, x, sigma, sigma_next, noise_level, sigma_max=sigma_max, prev_sample=prev_sample)


def transition_mean(v: torch.Tensor, x: torch.Tensor, sigma, sigma_next, noise_level: float,
                    sigma_max: float | None) -> torch.Tensor:
    """The mean [B, ...] of the SDE transition from ``x`` at ``sigma`` to ``sigma_next`` under velocity ``v``."""
    return transition(v, x, sigma, sigma_next, noise_level, sigma_max, prev_sample=x).mean


def _col(value, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32, device=like.device)
    return t.reshape(-1, *([1] * (like.ndim - 1))) if t.ndim else t


def kl_loss(mean_s: torch.Tensor, mean_t: torch.Tensor, std_dev: torch.Tensor | float, weighting: str = "code", *,
            sigma=None, sigma_next=None) -> torch.Tensor:
    """Per-sample distance [B] between the student's and a target's transitions at one step.

    With ``d = mu_s - mu_T`` (``= c (sigma_next - sigma) (v_s - v_T)``, ``c = 1 + std^2 (1 - sigma) / (2 sigma)``):

    * ``code``: ``mean_dims d^2 / (2 std_dev_t^2)``, the released code's scale (the true KL lacks ``|dt|`` and
      sums over dims); most of the weight falls on the last steps.
    * ``paper``: ``mean_dims d^2 / (2 std_dev_t^2 |dt|) = w(t) mean_dims (v_s - v_T)^2``, the paper's KL per
      dimension, ``w(t) = |dt| / 2 (std (1 - t) / (2 t) + 1 / std)^2``.
    * ``uniform``: ``mean_dims (v_s - v_T)^2``, velocity MSE with every step weighted alike.

    Args:
        mean_s: [B, ...] student transition mean (with gradient). mean_t: [B, ...] target mean.
        std_dev: the SDE's ``std_dev_t``: float, [B] or [B, 1, ...]; must be > 0 for ``code``/``paper``.
        sigma, sigma_next: float or [B]; needed by ``paper`` and ``uniform``.
    """
    check_choice("weighting", weighting, WEIGHTINGS)
    if mean_s.shape != mean_t.shape:
        raise ValueError(f"student mean {tuple(mean_s.shape)} and target mean {tuple(mean_t.shape)} differ in shape")
    std = _col(std_dev, mean_s)
    if weighting != "uniform" and not bool((std > 0).all()):
        raise ValueError("the KL needs std_dev_t > 0 (noise_level > 0): use weighting 'uniform' for an ODE")
    d2 = (mean_s.float() - mean_t.detach().float()) ** 2
    dims = tuple(range(1, mean_s.ndim))
    if weighting == "code":
        return (d2 / (2 * std**2)).mean(dims)
    if sigma is None or sigma_next is None:
        raise ValueError(f"weighting {weighting!r} needs sigma and sigma_next")
    s, dt = _col(sigma, mean_s), _col(sigma, mean_s) - _col(sigma_next, mean_s)
    if weighting == "paper":
        return (d2 / (2 * std**2 * dt)).mean(dims)
    c = 1 + std**2 * (1 - s) / (2 * s)
    return (d2 / (c * dt) ** 2).mean(dims)


def kl_divisor(kl: torch.Tensor, norm: str, *, tasks: Sequence[str] = (), step: int = 0,
               scales: Mapping[str, float] | None = None, eps: float = 1e-12) -> torch.Tensor:
    """What each sample's KL is divided by under ``kl_norm`` ``norm``: a detached [B] (all ones for ``none``).

    Args:
        kl: [B] the samples' KL to their teacher at step ``step`` (its value only is read).
        tasks: each sample's task (``per-task``).
        scales: the previous epoch's mean KL by metric name (``kl/teacher``, ``kl/teacher/step_<j>``,
            ``kl/teacher/<task>``); a scale it lacks is the mean of ``kl`` over the matching samples here.
    """
    check_choice("kl_norm", norm, KL_NORMS)
    kl, scales = kl.detach().float(), scales or {}
    if norm == "none":
        return torch.ones_like(kl)
    if norm == "per-sample":
        return kl.clamp_min(eps)
    if norm in ("per-timestep", "global"):
        key = names.per_step(names.KL_TEACHER, step) if norm == "per-timestep" else names.KL_TEACHER
        return torch.full_like(kl, scales.get(key, float(kl.mean()))).clamp_min(eps)
    if len(tasks) != kl.shape[0]:
        raise ValueError(f"per-task kl_norm needs a task per sample: {len(tasks)} tasks for {kl.shape[0]} samples")
    own = {t: scales.get(names.per_task(names.KL_TEACHER, t),
                         float(kl[[u == t for u in tasks]].mean())) for t in set(tasks)}
    return torch.tensor([own[t] for t in tasks], dtype=kl.dtype, device=kl.device).clamp_min(eps)


def kl_scales(metrics: Mapping[str, float]) -> dict[str, float]:
    """The scales :func:`kl_divisor` reads, from an epoch's metrics: every ``kl/teacher`` mean."""
    prefix = names.KL_TEACHER + "/"
    return {k: float(v) for k, v in metrics.items() if k == names.KL_TEACHER or k.startswith(prefix)}


def paper_weight(sigma: float, sigma_next: float, std_dev: float) -> float:
    """The paper's ``w(t) = (dt / 2) (std (1 - t) / (2 t) + 1 / std)^2`` (docs/method.md, "On-policy
    distillation"), for logging and tests."""
    return (sigma - sigma_next) / 2 * (std_dev * (1 - sigma) / (2 * sigma) + 1 / std_dev) ** 2


def pg_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, teacher_log_prob: torch.Tensor, *,
            clip_range: float = 1e-4, adv_clip: float = 5.0) -> torch.Tensor:
    """Mode ``pg``: advantage ``log pi_T(x_next|x) - log pi_old(x_next|x)`` (detached, clipped to ±adv_clip).

    All log-probs are [B], of the *sampled* ``x_next``, averaged over dims as ``sde_step`` gives them.
    """
    adv = (teacher_log_prob - old_log_prob).detach().clamp(-adv_clip, adv_clip)
    return clipped_objective(log_prob, old_log_prob, adv, clip_range=clip_range)


def paper_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, kl: torch.Tensor, *,
               clip_range: float = 1e-4, adv_clip: float = 5.0) -> torch.Tensor:
    """Mode ``paper``: reward ``-kl`` (detached analytic KL [B]) in the clipped objective.

    Its expected gradient is zero (see the module docstring); only the clipping changes anything.
    """
    adv = (-kl).detach().clamp(-adv_clip, adv_clip)
    return clipped_objective(log_prob, old_log_prob, adv, clip_range=clip_range)


@dataclass
class StepLoss:
    loss: torch.Tensor  # scalar: distillation + beta_mar * MAR
    kl_teacher: torch.Tensor  # [B] detached KL to the routed teacher (the weighting's scale)
    kl_anchor: torch.Tensor | None  # [B] detached KL to the anchor, None without MAR


def distill_step_loss(mode: str, student: SDEStep, teacher: SDEStep, old_log_prob: torch.Tensor, std_dev: torch.Tensor,
                      *, weighting: str = "code", sigma=None, sigma_next=None, anchor_mean: torch.Tensor | None = None,
                      beta_mar: float = 0.0, clip_range: float = 1e-4, adv_clip: float = 5.0,
                      kl_norm: str = "none", tasks: Sequence[str] = (), step: int = 0,
                      kl_scales: Mapping[str, float] | None = None) -> StepLoss:
    """The total loss of one denoising step of Stage 2.

    Args:
        mode: ``kl`` | ``pg`` | ``paper``.
        student: the student's transition scored at the stored next state (``prev_sample``), with gradient.
        teacher: the routed teacher's transition scored at the same next state (no gradient).
        old_log_prob: [B] the rollout's log-probs of that step.
        std_dev: the step's ``std_dev_t`` (:func:`flowopd.sampling.std_dev_t`).
        anchor_mean: [B, ...] the anchor's transition mean for MAR, or None.
        kl_norm, tasks, step, kl_scales: :func:`kl_divisor`'s, dividing each sample's KL and MAR term (mode
            ``kl`` only).
    """
    check_choice("loss mode", mode, LOSS_MODES)
    kl = kl_loss(student.mean, teacher.mean, std_dev, weighting, sigma=sigma, sigma_next=sigma_next)
    if kl_norm != "none" and mode != "kl":
        raise ValueError(f"kl_norm divides the analytic KL: it needs loss_mode 'kl', not {mode!r}")
    scale = 1.0 if kl_norm == "none" else 1.0 / kl_divisor(kl, kl_norm, tasks=tasks, step=step, scales=kl_scales)
    if mode == "kl":
        loss = (kl * scale).mean()
    elif mode == "pg":
        loss = pg_loss(student.log_prob, old_log_prob, teacher.log_prob, clip_range=clip_range, adv_clip=adv_clip)
    else:
        loss = paper_loss(student.log_prob, old_log_prob, kl, clip_range=clip_range, adv_clip=adv_clip)
    kl_anchor = None
    if anchor_mean is not None and beta_mar > 0:
        kl_anchor = kl_loss(student.mean, anchor_mean, std_dev, weighting, sigma=sigma, sigma_next=sigma_next)
        loss = loss + beta_mar * (kl_anchor * scale).mean()
        kl_anchor = kl_anchor.detach()
    if not math.isfinite(float(loss.detach())):
        raise FloatingPointError(f"distillation loss is {float(loss)} (mode {mode!r}): lower the learning rate "
                                 "or check the teacher adapters")
    return StepLoss(loss, kl.detach(), kl_anchor)
