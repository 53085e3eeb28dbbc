"""Stage 1: a Flow-GRPO teacher on one reward, or on several with weights (the GRPO-Mix baseline).

Per epoch (docs/method.md, "GRPO"): SDE rollouts of the student adapter with log-probs (noise level a,
CFG), rewards (:func:`flowopd.training.rollout.score_rollout`), per-prompt group advantages over the
samples of *all* processes (:func:`gather_advantages`), then for the first ``timestep_fraction`` of the
steps the clipped ratio loss on the re-scored stored transitions plus ``beta`` times the KL to the base
model (adapters disabled).

Example::

    from flowopd.configs import GRPOConfig
    from flowopd.models import load_model
    from flowopd.methods.grpo.trainer import train_grpo

    result = train_grpo(load_model(), GRPOConfig(rewards={"text": 1.0}, prompt_tasks={"text": 1.0}), "runs/t-text")
    print(result.adapter_dir)  # runs/t-text/adapter
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from ... import metric_names as names
from ...models.base import FlowModel
from ...rewards import get_reward
from ...sampling import std_dev_t
from ...training.dist import MetricSums, gather
from ...training.loop import Callback, RLTrainer, TrainResult
from ...training.rollout import Rollout, Scores, gather_scores, reward_metrics, score_rollout
from .config import GRPOConfig
from .loss import group_advantages, grpo_step_loss, kl_to_reference


@dataclass
class Advantages:
    local: torch.Tensor  # [B] advantages of this process's samples
    keep: list[int]  # local rows that train (all, or those of groups whose rewards differ)
    rewards: torch.Tensor  # [P * B] the gathered rewards the advantages were computed over
    advantages: torch.Tensor  # [P * B]


def gather_advantages(accelerator: Accelerator, rewards: torch.Tensor, group_size: int, *, global_std: bool = True,
                      mask_zero_std: bool = False) -> Advantages:
    """Group advantages of every process's rewards; this process keeps its own slice.

    Args:
        rewards: [B] this process's rewards, whole groups of ``group_size`` in a row.
        mask_zero_std: leave out groups whose rewards are all equal (advantage 0: no signal, as Flow-GRPO).
    """
    everything = gather(accelerator, rewards.float())
    groups = [i // group_size for i in range(len(everything))]
    adv = group_advantages(everything, groups, global_std=global_std)
    b, rank = len(rewards), accelerator.process_index
    keep = list(range(b))
    if mask_zero_std:
        by_group = everything.view(-1, group_size)
        spread = (by_group.amax(1) - by_group.amin(1)).tolist()
        keep = [i for i in range(b) if spread[(rank * b + i) // group_size] > 1e-8]
    return Advantages(adv[rank * b:(rank + 1) * b].to(rewards.device), keep, everything, adv)


class GRPOTrainer(RLTrainer):
    """Flow-GRPO on the student adapter ``cfg.adapter_name``; see the module docstring."""

    stage = "grpo"

    def __init__(self, model: FlowModel, cfg: GRPOConfig, out_dir: str | Path, *,
                 accelerator: Accelerator | None = None, resume: bool = True):
        if not isinstance(cfg, GRPOConfig):
            raise TypeError(f"train_grpo needs a GRPOConfig, got {type(cfg).__name__}")
        for name in cfg.rewards:
            get_reward(name)  # an unknown reward fails now, not after the first rollout
        super().__init__(model, cfg, out_dir, accelerator)
        self.init_student(None, resume)

    def sample_tasks(self) -> list[str]:
        return list(self.cfg.prompt_tasks)

    def score(self, roll: Rollout) -> Scores:
        return score_rollout(self.model, roll, self.cfg.rewards, list(self.cfg.prompt_tasks),
                             decode_chunk=self.cfg.decode_chunk)

    def step_loss(self, roll: Rollout, adv: torch.Tensor, rows: list[int], j: int) -> tuple[torch.Tensor, dict]:
        """Clipped-ratio loss of rows ``rows`` at step ``j`` plus ``beta`` x KL to the base; and its metrics."""
        cfg = self.cfg
        student = self.transition(self.name, roll, rows, j)
        old = roll.log_probs[rows, j]
        policy = grpo_step_loss(student.log_prob, old, adv[rows], clip_range=cfg.clip_range, adv_clip=cfg.adv_clip)
        ratio = torch.exp(student.log_prob.detach() - old)
        values = {"policy_loss": policy.detach(), "ratio": ratio,
                  "clip_frac": ((ratio - 1).abs() > cfg.clip_range).float()}
        loss = policy
        if cfg.beta > 0:
            with torch.no_grad():
                ref = self.transition(None, roll, rows, j)
            kl = kl_to_reference(student.mean, ref.mean, std_dev_t(student, roll.sigmas[j], roll.sigmas[j + 1]))
            loss = loss + cfg.beta * kl.mean()
            values.update({names.KL_BASE: kl.detach(), names.per_step(names.KL_BASE, j): kl.detach()})
        return loss, values

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        roll = self.make_rollout(epoch, cfg.prompt_tasks)
        scores = self.score(roll)
        gathered = gather_scores(self.acc, roll, scores)
        adv = gather_advantages(self.acc, scores.total, cfg.group_size, global_std=cfg.global_std,
                                mask_zero_std=cfg.mask_zero_std)
        metrics = MetricSums()
        metrics.add("trained_fraction", len(adv.keep) / len(roll))
        self.accumulate(adv.keep, lambda rows, j: self.step_loss(roll, adv.local, rows, j), metrics)
        return {**metrics.means(self.acc), **reward_metrics(gathered),
                "reward_std": float(adv.rewards.std(correction=0)), "advantage_abs": float(adv.advantages.abs().mean())}


def train_grpo(model: FlowModel, cfg: GRPOConfig, out_dir: str | Path, *, callback: Callback | None = None,
               should_stop: Callable[[], bool] | None = None, resume: bool = True,
               accelerator: Accelerator | None = None) -> TrainResult:
    """Train a GRPO teacher (or GRPO-Mix) adapter; see the module docstring and :mod:`flowopd.training.loop`.

    Args:
        model: the frozen base (tiny or SD3); the adapter ``cfg.adapter_name`` is (re)created on it.
        out_dir: checkpoints go to ``OUT/checkpoint``, the final adapter to ``OUT/adapter``.
        callback: gets the metrics of every epoch (main process only).
        should_stop: polled after every epoch; True saves a checkpoint and returns.
        resume: continue from ``OUT/checkpoint`` when there is one.
        accelerator: default: a new ``accelerate.Accelerator``.
    """
    return GRPOTrainer(model, cfg, out_dir, accelerator=accelerator, resume=resume).run(callback, should_stop)
