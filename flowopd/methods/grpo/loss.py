"""Flow-GRPO's pieces (docs/method.md, "GRPO"): group advantages, the clipped policy loss, the KL to a reference.

The log-probs these functions take are ``flowopd.sampling.sde_step`` log-probs: Gaussian log-densities
*averaged* over the latent dimensions, which is why the ratio stays near 1 and the clip range is as small
as 1e-4. The same clipped objective serves the distillation losses of ``flowopd.methods.opd.loss``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch


def group_advantages(rewards: torch.Tensor, group_ids: Sequence[Hashable], *, global_std: bool = True,
                     eps: float = 1e-4) -> torch.Tensor:
    """Per-prompt group advantages, as Flow-GRPO's stat tracker (docs/method.md, "GRPO").

    ``A_i = (r_i - mean of i's group) / (std + eps)``, where std is the population standard deviation
    (ddof 0) of all N rewards when ``global_std`` (Flow-GRPO's default), else of i's group. A group of one
    has no baseline and gets 0.

    Args:
        rewards: float tensor [N]; under several processes, pass the gathered rewards of all of them.
        group_ids: N hashables, one per reward (the prompt, or its index).
        global_std: normalise by the std of all rewards (True) or of each group (False).
        eps: added to the std so that a group of equal rewards gives 0, not NaN.

    Returns:
        float32 tensor [N] on the device of ``rewards``.

    Example:
        >>> group_advantages(torch.tensor([1.0, 3.0, 2.0, 4.0]), ["a", "a", "b", "b"], eps=0.0)
        tensor([-0.8944,  0.8944, -0.8944,  0.8944])
        >>> group_advantages(torch.tensor([1.0, 3.0, 5.0]), ["a", "a", "b"], global_std=False, eps=0.0)
        tensor([-1.,  1.,  0.])
    """
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be a 1-D tensor [N], got shape {tuple(rewards.shape)}")
    if len(group_ids) != rewards.shape[0]:
        raise ValueError(f"got {len(group_ids)} group ids for {rewards.shape[0]} rewards: pass one id per reward")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards contain NaN or inf: check the reward functions' outputs")
    r = rewards.detach().double()  # float64: a std of nearly equal rewards loses digits in fp32
    index: dict[Hashable, int] = {}
    groups = torch.tensor([index.setdefault(g, len(index)) for g in group_ids], device=r.device)
    count = torch.zeros(len(index), dtype=r.dtype, device=r.device).index_add_(0, groups, torch.ones_like(r))
    total = torch.zeros_like(count).index_add_(0, groups, r)
    centred = r - (total / count)[groups]
    if global_std:
        std = r.std(correction=0) if len(r) > 1 else torch.zeros((), dtype=r.dtype, device=r.device)
    else:
        var = torch.zeros_like(count).index_add_(0, groups, centred**2) / count
        std = var.sqrt()[groups]
    adv = centred / (std + eps)
    adv = torch.where(count[groups] > 1, adv, torch.zeros_like(adv))
    return adv.float()


def clipped_objective(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, *,
                      clip_range: float = 1e-4) -> torch.Tensor:
    """PPO's pessimistic clipped surrogate as a loss, ``mean(max(-A r, -A clip(r, 1-eps, 1+eps)))``.

    Args:
        log_prob: [B] log-probs of the stored actions under the current policy (with gradient).
        old_log_prob: [B] log-probs under the policy that sampled them (detached here).
        advantages: [B] advantages, already clipped if wanted (detached here).

    Returns:
        scalar loss.
    """
    ratio = torch.exp(log_prob - old_log_prob.detach())
    adv = advantages.detach()
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped).mean()


def grpo_step_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, *,
                   clip_range: float = 1e-4, adv_clip: float = 5.0) -> torch.Tensor:
    """Flow-GRPO's policy loss at one denoising step (docs/method.md, "GRPO"): advantages clipped to ±adv_clip, PPO
    clip.

    Args:
        log_prob, old_log_prob, advantages: [B] (see :func:`clipped_objective`).

    Returns:
        scalar loss.

    Example:
        >>> lp = torch.zeros(2, requires_grad=True)
        >>> grpo_step_loss(lp, torch.zeros(2), torch.tensor([1.0, -9.0]))  # ratio 1: -mean(clip(A))
        tensor(2., grad_fn=<MeanBackward0>)
    """
    if not clip_range > 0:
        raise ValueError(f"clip_range must be positive (Flow-GRPO uses 1e-4), got {clip_range}")
    if not adv_clip > 0:
        raise ValueError(f"adv_clip must be positive (Flow-GRPO uses 5.0), got {adv_clip}")
    adv = torch.clamp(advantages, -adv_clip, adv_clip)
    return clipped_objective(log_prob, old_log_prob, adv, clip_range=clip_range)


def kl_to_reference(mean: torch.Tensor, ref_mean: torch.Tensor, std_dev_t: torch.Tensor | float) -> torch.Tensor:
    """Per-sample KL between two Gaussian transitions of equal covariance, at Flow-GRPO's scale (docs/method.md,
    "GRPO").

    ``mean over non-batch dims of (mean - ref_mean)^2 / (2 std_dev_t^2)``. Like Flow-GRPO, the
    denominator lacks the ``|dt|`` of the true KL, so the betas of the released configs keep their meaning.

    Args:
        mean: [B, ...] transition mean of the policy (with gradient).
        ref_mean: [B, ...] transition mean of the reference (base model or anchor adapter).
        std_dev_t: float, [B] or [B, 1, ...]: the SDE's ``std_dev_t`` at this step (not the transition std).

    Returns:
        [B] per-sample KL.
    """
    if mean.shape != ref_mean.shape:
        raise ValueError(f"mean {tuple(mean.shape)} and ref_mean {tuple(ref_mean.shape)} must have the same shape")
    std = torch.as_tensor(std_dev_t, dtype=torch.float32, device=mean.device)
    if std.ndim == 1:
        std = std.reshape(-1, *([1] * (mean.ndim - 1)))
    dims = tuple(range(1, mean.ndim))
    return ((mean.float() - ref_mean.float()) ** 2 / (2 * std**2)).mean(dims)
