"""Advantage Weighted Matching's loss (arXiv 2509.25050; scxue/advantage_weighted_matching; docs/method.md, "AWM")
as a pure function over tensors.

AWM trains on the *forward* process, like DiffusionNFT: the policy's own clean samples ``x0`` are noised
again, ``x_t = (1 - t) x0 + t eps``, and the flow-matching error of the trained velocity ``v`` stands in for a
log-likelihood::

    logp = -mean_dims (v - (eps - x0))^2        ratio = exp(logp - sg(logp_old))

The policy term is PPO's clipped surrogate ``max(-A ratio, -A clip(ratio, 1 - c, 1 + c))``. On-policy
``logp_old == logp`` (ratio 1), so its gradient is ``-A grad logp = A grad ||v - (eps - x0)||^2``: the
flow-matching loss weighted by the advantage, which a high-advantage sample descends and a low-advantage one
ascends. Two pulls keep the policy near: ``ref_weight mean (v - v_ref)^2`` towards the base and
``ema_weight mean (v - v_ema)^2`` towards an EMA of the policy.

Conventions (diffusers): t = 1 is noise, the model predicts ``v = eps - x0``. Importing this module costs
only torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GHUBER_EPS = 1e-10  # the released code's offset inside the generalised Huber weighting


def flow_logp(v: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | None = None,
              weighting: str = "uniform", power: float = 0.25) -> torch.Tensor:
    """[B] AWM's per-sample "log-prob": ``-mse`` with ``mse = mean_dims (v - (eps - x0))^2`` (the negative
    flow-matching loss; ``uniform``), or the released code's generalised Huber weighting (``ghuber``),
    ``-t ((mse + 1e-10)^p - 1e-10^p) / p``, which grows slower than the squared error (robust to outliers) and
    weights noisier levels more.

    Args:
        v: [B, C, H, W] velocity. x0: [B, C, H, W] clean samples. eps: [B, C, H, W] the noise of ``x_t``.
        t: [B] the noise levels (needed by ``ghuber``). weighting: ``uniform`` | ``ghuber``. power: its p.

    Example:
        >>> flow_logp(torch.ones(1, 1, 1, 2), torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 3.0]]]]))
        tensor([-2.])
    """
    dims = tuple(range(1, x0.ndim))
    mse = ((v.float() - (eps.float() - x0.float())) ** 2).mean(dims)
    if weighting == "uniform":
        return -mse
    if weighting == "ghuber":
        if t is None:
            raise ValueError("the ghuber weighting needs the noise levels t")
        offset = GHUBER_EPS ** power
        return -((mse + GHUBER_EPS) ** power - offset) * t.float().to(mse.device).view(-1) / power
    raise ValueError(f"weighting={weighting!r} is unknown: use uniform or ghuber")


def scaled_advantages(advantages: torch.Tensor, adv_clip: float, advantage_max: float | None) -> torch.Tensor:
    """Advantages clipped to ``+-adv_clip``, then scaled to ``+-advantage_max`` (the released code's
    ``A / adv_clip_max * advantage_max``) unless it is None.

    Example:
        >>> scaled_advantages(torch.tensor([-7.0, 2.5, 10.0]), 5.0, 1.0)
        tensor([-1.0000,  0.5000,  1.0000])
    """
    a = advantages.float().clamp(-adv_clip, adv_clip)
    return a if advantage_max is None else a / adv_clip * advantage_max


@dataclass
class AWMLoss:
    """The loss of one micro-batch and its parts (per-sample parts detached, for metrics)."""

    loss: torch.Tensor  # scalar, with gradient: policy + ref_weight * mean(ref_mse) + ema_weight * mean(ema_mse)
    policy: torch.Tensor  # [B] the clipped surrogate max(-A ratio, -A clip(ratio, 1 - c, 1 + c))
    logp: torch.Tensor  # [B] -mean_dims (v - (eps - x0))^2
    ratio: torch.Tensor  # [B] exp(logp - logp_old)
    clipped: torch.Tensor  # [B] 1.0 where the clip was active (the clipped branch was taken and differs)
    ref_mse: torch.Tensor  # [B] mean over dims of (v - v_ref)^2 (zeros without v_ref)
    ema_mse: torch.Tensor  # [B] mean over dims of (v - v_ema)^2 (zeros without v_ema)


def awm_loss(v: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
             *, clip: float = 1.0, v_ref: torch.Tensor | None = None, ref_weight: float = 0.003,
             v_ema: torch.Tensor | None = None, ema_weight: float = 0.0, t: torch.Tensor | None = None,
             weighting: str = "uniform", power: float = 0.25) -> AWMLoss:
    """AWM's loss on one micro-batch at one noise level per sample, as its code computes it.

    ``logp = -mean_dims (v - (eps - x0))^2``, ``ratio = exp(logp - sg(logp_old))``,
    ``policy = max(-A ratio, -A clip(ratio, 1 - clip, 1 + clip))`` and
    ``loss = mean_B policy + ref_weight mean_B mean_dims (v - v_ref)^2 + ema_weight mean_B mean_dims (v - v_ema)^2``.

    Args:
        v: [B, C, H, W] the trainable policy's velocity at (x_t, t), with gradient.
        x0: [B, C, H, W] the clean samples. eps: [B, C, H, W] the noise with ``x_t = (1 - t) x0 + t eps``.
        logp_old: [B] the sampling policy's :func:`flow_logp` at the same (x_t, t) (detached here).
        advantages: [B] group-normalised (and clipped) advantages.
        clip: the ratio clip c (> 0; the code's 1: ratio in [0, 2]).
        v_ref: [B, C, H, W] the base model's velocity (detached here), or None for no pull towards the base.
        ref_weight: weight of the pull towards the base (the code's KL beta 0.003).
        v_ema: [B, C, H, W] the policy EMA's velocity (detached here), or None for no pull towards it.
        ema_weight: weight of the pull towards the EMA.
        t, weighting, power: the log-prob's weighting (:func:`flow_logp`); ``logp_old`` must use the same.
    """
    if not clip > 0:
        raise ValueError(f"clip={clip} must be > 0 (the code clips the ratio at 1 +- 1)")
    others = {"eps": eps, "v_ref": v_ref, "v_ema": v_ema}
    if v.shape != x0.shape or any(o is not None and o.shape != x0.shape for o in others.values()):
        shapes = ", ".join(f"{k} {tuple(o.shape)}" for k, o in others.items() if o is not None)
        raise ValueError(f"v {tuple(v.shape)}, x0 {tuple(x0.shape)}, {shapes} must have one shape [B, C, H, W]")
    if logp_old.shape != advantages.shape or logp_old.shape != x0.shape[:1]:
        raise ValueError(f"logp_old {tuple(logp_old.shape)} and advantages {tuple(advantages.shape)} must be "
                         f"[B] with B = {x0.shape[0]}")
    dims = tuple(range(1, x0.ndim))
    v = v.float()
    adv = advantages.float().to(v.device)
    logp = flow_logp(v, x0, eps, t, weighting, power)
    ratio = torch.exp(logp - logp_old.detach().float().to(v.device))
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    policy = torch.maximum(unclipped, clipped)
    loss = policy.mean()
    zeros = torch.zeros_like(logp).detach()
    ref_mse = ((v - v_ref.detach().float()) ** 2).mean(dims) if v_ref is not None else zeros
    ema_mse = ((v - v_ema.detach().float()) ** 2).mean(dims) if v_ema is not None else zeros
    if v_ref is not None and ref_weight > 0:
        loss = loss + ref_weight * ref_mse.mean()
    if v_ema is not None and ema_weight > 0:
        loss = loss + ema_weight * ema_mse.mean()
    return AWMLoss(loss, policy.detach(), logp.detach(), ratio.detach(), (clipped > unclipped).float().detach(),
                   ref_mse.detach(), ema_mse.detach())
