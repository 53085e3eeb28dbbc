"""DiffusionNFT's pieces (arXiv 2509.16117; docs/method.md, "DiffusionNFT"): the optimality weight, the old adapter's
soft-update schedule and the negative-aware flow-matching loss, as pure functions over tensors.

The method trains on the *forward* process: the policy's own clean samples ``x0`` are noised again,
``x_t = (1 - t) x0 + t eps``, and the trainable velocity ``v`` is mixed with the frozen "old" velocity
``v_old`` into an implicit positive and an implicit negative policy::

    v+ = beta v + (1 - beta) v_old          v- = (1 + beta) v_old - beta v

A sample of optimality ``r`` in [0, 1] pulls ``v+`` towards its flow-matching target ``eps - x0`` with
weight ``r`` and ``v-`` with weight ``1 - r``. At ``v == v_old`` the gradient is ``(2 r - 1)`` times the
flow-matching gradient: a high-reward sample (r > 1/2) is learnt, a low-reward one (r < 1/2) unlearnt.

Conventions (diffusers): t = 1 is noise, the model predicts ``v = eps - x0``. Importing this module costs
only torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ADAPTIVE_FLOOR = 1e-5  # the code's floor on the adaptive normaliser mean |x0_hat - x0|


def optimality(advantages: torch.Tensor, z: float = 5.0) -> torch.Tensor:
    """The optimality weight ``r = 1/2 + 1/2 clip(A / z, -1, 1)`` in [0, 1] of each sample.

    The paper normalises the raw reward by ``Z_c``; the released code passes Flow-GRPO's group advantages
    (per-prompt mean, global std) clipped to +-``adv_clip_max`` and divides by that same bound, which is
    this formula with ``z = adv_clip_max`` (5).

    Args:
        advantages: [B] group-normalised advantages.
        z: the normaliser Z_c (> 0).

    Example:
        >>> optimality(torch.tensor([-10.0, 0.0, 2.5, 5.0]))
        tensor([0.0000, 0.5000, 0.7500, 1.0000])
    """
    if not z > 0:
        raise ValueError(f"the normaliser z={z} must be > 0 (the code uses adv_clip 5)")
    return 0.5 + 0.5 * torch.clamp(advantages.float() / z, -1.0, 1.0)


def old_decay(step: int, *, rate: float = 0.001, maximum: float = 0.5, flat: int = 0) -> float:
    """Decay ``d`` of the old adapter's soft update ``old <- d old + (1 - d) theta`` after optimizer step ``step``:
    0 for the first ``flat`` steps (the old adapter copies the policy), then ``min(rate (step - flat), maximum)``.

    The released code's schedules: ``rate 0.001, maximum 0.5, flat 0`` (default) and, for OCR,
    ``rate 0.0075, maximum 0.999, flat 75``.

    Example:
        >>> old_decay(100), old_decay(10_000), old_decay(50, rate=0.0075, maximum=0.999, flat=75)
        (0.1, 0.5, 0.0)
    """
    if step < flat:
        return 0.0
    return min((step - flat) * rate, maximum)


@dataclass
class NFTLoss:
    """The loss of one micro-batch and its parts (per-sample parts detached, for metrics)."""

    loss: torch.Tensor  # scalar, with gradient: scale * mean(r L+ + (1 - r) L-) + ref_weight * mean(kl_ref)
    positive: torch.Tensor  # [B] L+ (weighted squared error of the positive policy's x0 prediction)
    negative: torch.Tensor  # [B] L-
    kl_ref: torch.Tensor  # [B] mean over dims of (v - v_ref)^2


def _branch(v_mix: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, tt: torch.Tensor, adaptive: bool) -> torch.Tensor:
    """[B] loss of one implicit policy: its x0 error ``e = x_t - t v_mix - x0 = t (eps - x0 - v_mix)``, either
    ``mean(e^2) / sg(mean|e|)`` (adaptive) or ``mean(e^2) / t^2 = mean((v_mix - (eps - x0))^2)`` (plain)."""
    dims = tuple(range(1, x0.ndim))
    err = x_t - tt * v_mix - x0
    if adaptive:
        with torch.no_grad():  # the normaliser carries no gradient (stop-gradient)
            norm = err.double().abs().mean(dims, keepdim=True).clamp(min=ADAPTIVE_FLOOR).to(err.dtype)
        return (err**2 / norm).mean(dims)
    return (err**2 / tt**2).mean(dims)


def nft_loss(v: torch.Tensor, v_old: torch.Tensor, v_ref: torch.Tensor | None, x0: torch.Tensor, x_t: torch.Tensor,
             t: torch.Tensor, r: torch.Tensor, beta: float, *, adaptive: bool = True, scale: float = 1.0,
             ref_weight: float = 1e-4) -> NFTLoss:
    """DiffusionNFT's loss on one micro-batch at one noise level per sample.

    ``L+- = mean(e+-^2) / sg(mean|e+-|)`` with ``e+- = x_t - t v+- - x0`` (``adaptive``, the paper's practical
    weighting and the released code), or the paper's equation ``L+- = mean((v+- - (eps - x0))^2)``;
    ``loss = scale * mean_B(r L+ + (1 - r) L-) + ref_weight * mean_B mean_dims (v - v_ref)^2``. The code's
    ``scale`` is ``adv_clip / beta`` (5 at beta 1), which keeps the gradient's size independent of beta.

    Args:
        v: [B, C, H, W] the trainable policy's velocity at (x_t, t), with gradient.
        v_old: [B, C, H, W] the frozen old adapter's velocity (detached here).
        v_ref: [B, C, H, W] the base model's velocity (detached here), or None for no pull towards the base.
        x0: [B, C, H, W] the clean samples. x_t: [B, C, H, W] ``(1 - t) x0 + t eps``.
        t: [B] noise levels in (0, 1]. r: [B] optimality weights in [0, 1] (:func:`optimality`).
        beta: the mixing weight (> 0; 1 in the code's default configs, 0.1 for OCR and multi-reward).
        adaptive: the adaptive per-sample weighting (True) or the plain velocity MSE (False).
        scale: multiplies the policy term. ref_weight: weight of the pull towards the base (1e-4 in the code).
    """
    if not beta > 0:
        raise ValueError(f"beta={beta} must be > 0 (1.0 in DiffusionNFT's configs, 0.1 for OCR)")
    if v.shape != x0.shape or v_old.shape != x0.shape or x_t.shape != x0.shape:
        raise ValueError(f"v {tuple(v.shape)}, v_old {tuple(v_old.shape)}, x_t {tuple(x_t.shape)} and x0 "
                         f"{tuple(x0.shape)} must have one shape [B, C, H, W]")
    tt = t.float().reshape(-1, *([1] * (x0.ndim - 1)))
    v, v_old = v.float(), v_old.detach().float()
    x0, x_t, r = x0.float(), x_t.float(), r.float().to(v.device)
    positive = _branch(beta * v + (1 - beta) * v_old, x0, x_t, tt, adaptive)
    negative = _branch((1 + beta) * v_old - beta * v, x0, x_t, tt, adaptive)
    loss = scale * (r * positive + (1 - r) * negative).mean()
    dims = tuple(range(1, x0.ndim))
    kl_ref = ((v - v_ref.detach().float()) ** 2).mean(dims) if v_ref is not None else torch.zeros_like(positive)
    if v_ref is not None and ref_weight > 0:
        loss = loss + ref_weight * kl_ref.mean()
    return NFTLoss(loss, positive.detach(), negative.detach(), kl_ref.detach())
