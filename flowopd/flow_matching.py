"""The rectified-flow (flow-matching) loss and its optimizer step, shared by pretraining and cold-start SFT.

``x_t = (1 - t) x + t eps`` with logit-normal ``t = sigmoid(N(logit_mean, logit_std))`` (as SD3); the model's
velocity is regressed onto ``eps - x`` (the diffusers convention: t = 1 is noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .models.base import FlowModel, PromptEmbeds


@dataclass
class FlowMatchingLoss:
    loss: torch.Tensor  # scalar: mean over batch and dims of (v - (eps - x))^2
    velocity: torch.Tensor  # [B, C, H, W] the model's velocity at (x_t, t), with gradient
    x_t: torch.Tensor  # [B, C, H, W] the noised latents
    t: torch.Tensor  # [B] the noise levels drawn


def flow_matching_loss(model: FlowModel, x: torch.Tensor, cond: PromptEmbeds, generator: torch.Generator,
                       logit_mean: float = 0.0, logit_std: float = 1.0) -> FlowMatchingLoss:
    """The flow-matching loss of ``model`` (its active adapter) on clean latents ``x`` [B, C, H, W].

    Draws the noise [B, C, H, W], then t [B], from ``generator`` (a CPU generator: the draws, and so the
    numbers, do not depend on the device).

    Args:
        x: clean latents [B, C, H, W] on the model's device. cond: B prompt embeddings.
        logit_mean, logit_std: the logit-normal distribution of t (SD3: 0 and 1).
    """
    noise = torch.randn(x.shape, generator=generator).to(x.device)
    t = torch.sigmoid(logit_mean + logit_std * torch.randn(x.shape[0], generator=generator)).to(x.device)
    tt = t.view(-1, *([1] * (x.ndim - 1)))
    x_t = (1 - tt) * x + tt * noise
    v = model.raw_velocity(x_t, t, cond)
    return FlowMatchingLoss(torch.mean((v - (noise - x)) ** 2), v, x_t, t)


def clipped_step(optimizer: torch.optim.Optimizer, params: Sequence[torch.nn.Parameter], loss: torch.Tensor,
                 max_grad_norm: float = 1.0) -> None:
    """One optimizer step on ``loss``: zero the gradients, backpropagate, clip their norm, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
