"""An Advantage Weighted Matching teacher (arXiv 2509.25050; docs/method.md, "AWM") on one reward, or on several.

Per epoch: deterministic ODE rollouts of the current policy (or of its EMA with ``sample_from_ema``, the code's
``off_policy``; CFG-free by default), rewards, per-prompt group advantages over all processes clipped to
``+-adv_clip``. Training uses the clean samples alone, as DiffusionNFT does, and reuses its trainer
(:class:`flowopd.methods.nft.trainer.NFTTrainer`): each sample is noised again at ``timesteps_per_sample`` of the
rollout's sigmas with fresh noise (:meth:`~flowopd.methods.nft.trainer.NFTTrainer.noised`). Before the first optimizer
step of the epoch the sampling policy's flow-matching "log-probs" ``logp_old`` of every (sample, noise level)
are computed; :func:`flowopd.methods.awm.loss.awm_loss` then weights each sample's flow-matching loss by its advantage
through the PPO-clipped ratio ``exp(logp - logp_old)``, plus pulls towards the base and the policy's EMA. After
the epoch the EMA moves towards the policy (``ema <- d ema + (1 - d) theta``, ``d = ema_target_decay``).

The EMA target is NFT's old adapter (``<adapter_name>_old``, saved in the checkpoint's ``old/``), so a resume
is exact. Metrics beyond the loop's: ``reward/<name>``, ``reward_std``, ``advantage_abs``, ``policy_loss``,
``ratio``, ``clip_frac``, ``awm/fm_loss``, ``awm/ref_mse``, ``awm/ema_mse``.

Example::

    from flowopd.methods.awm.config import AWMConfig
    from flowopd.models import load_model
    from flowopd.methods.awm.trainer import train_awm

    result = train_awm(load_model(), AWMConfig(rewards={"prefer": 1.0}, prompt_tasks={"prefer": 1.0}), "runs/awm")
    print(result.adapter_dir)  # runs/awm/adapter
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator

from ... import metric_names as names
from ...adapters import use_adapter
from ...models.base import FlowModel
from ...training.dist import MetricSums
from ...training.loop import Callback, TrainResult
from ...training.rollout import Rollout, epoch_seed
from ..nft.trainer import NFTTrainer
from .config import AWMConfig
from .loss import awm_loss, flow_logp, scaled_advantages


class AWMTrainer(NFTTrainer):
    """AWM on the adapter ``cfg.adapter_name`` with its EMA target ``<name>_old``; see the module docstring."""

    stage = "awm"
    config_class = AWMConfig

    def sampler(self) -> str:
        """On-policy rollouts from the trained adapter, or from its EMA (``sample_from_ema``)."""
        return self.old if self.cfg.sample_from_ema else self.name

    @torch.no_grad()
    def update_old(self) -> float:
        """``ema <- d ema + (1 - d) theta`` with ``d = ema_target_decay``; returns d."""
        d = self.cfg.ema_target_decay
        if self.cfg.ema_target_schedule == "linear":  # the released code's min(decay, 0.001 step)
            d = min(d, 0.001 * self.step)
        torch._foreach_lerp_(self.old_params, [p.detach() for p in self.params], 1.0 - d)
        return d

    def noise_levels(self, epoch: int, n: int) -> list[list[int]]:
        """Row i's rollout-sigma indices (``timesteps_per_sample`` distinct ones among the trained levels,
        :meth:`AWMConfig.trained_levels`) for ``epoch``."""
        cfg, rank = self.cfg, self.acc.process_index
        levels = cfg.trained_levels()
        return [random.Random(epoch_seed(cfg.seed, epoch, rank, f"t:{i}")).sample(levels, cfg.timesteps_per_sample)
                for i in range(n)]

    def velocity(self, adapter: str | None, roll: Rollout, rows: list[int], x_t: torch.Tensor,
                 t: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] velocity of ``adapter`` (None: the base) at (x_t, t) for rows ``rows``."""
        cond, uncond = roll.embeds(rows)
        with use_adapter(self.model, adapter):
            return self.model.velocity(x_t, t, cond, uncond, self.cfg.guidance)

    @torch.no_grad()
    def old_logps(self, roll: Rollout, levels: list[list[int]]) -> torch.Tensor:
        """[N, K] the sampling policy's :func:`flow_logp` of every row at each of its K noise levels, before
        the epoch's first optimizer step (the code's pre-computed old log-probs)."""
        cfg, n = self.cfg, len(roll)
        out = torch.zeros(n, cfg.timesteps_per_sample)
        for start in range(0, n, cfg.train_batch_size):
            rows = list(range(start, min(start + cfg.train_batch_size, n)))
            for j in range(cfg.timesteps_per_sample):
                x0, eps, t, x_t = self.noised(roll, levels, rows, j)
                out[rows, j] = flow_logp(self.velocity(self.sampler(), roll, rows, x_t, t), x0, eps, t,
                                         cfg.weighting, cfg.ghuber_power).cpu()
        return out

    def awm_step_loss(self, roll: Rollout, adv: torch.Tensor, levels: list[list[int]], logp_old: torch.Tensor,
                      rows: list[int], j: int) -> tuple[torch.Tensor, dict]:
        """AWM loss of rows ``rows`` at their j-th noise level, and its metrics."""
        cfg = self.cfg
        x0, eps, t, x_t = self.noised(roll, levels, rows, j)
        with torch.no_grad():
            v_ref = self.velocity(None, roll, rows, x_t, t) if cfg.ref_weight > 0 else None
            v_ema = self.velocity(self.old, roll, rows, x_t, t) if cfg.ema_weight > 0 else None
        v = self.velocity(self.name, roll, rows, x_t, t)
        out = awm_loss(v, x0, eps, logp_old[rows, j].to(v.device), adv[rows], clip=cfg.clip_range, v_ref=v_ref,
                       ref_weight=cfg.ref_weight, v_ema=v_ema, ema_weight=cfg.ema_weight, t=t,
                       weighting=cfg.weighting, power=cfg.ghuber_power)
        values = {names.POLICY_LOSS: out.policy, names.RATIO: out.ratio, names.CLIP_FRAC: out.clipped,
                  names.AWM_FM: -out.logp}
        if v_ref is not None:
            values[names.AWM_REF_MSE] = out.ref_mse
        if v_ema is not None:
            values[names.AWM_EMA_MSE] = out.ema_mse
        return out.loss, values

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        roll, gathered, adv = self.scored_rollout(epoch)
        a = scaled_advantages(adv.local, cfg.adv_clip, cfg.advantage_max)
        levels = self.noise_levels(epoch, len(roll))
        logp_old = self.old_logps(roll, levels)
        metrics = MetricSums()
        self.accumulate(list(range(len(roll))),
                        self.joint(lambda rows, j: self.awm_step_loss(roll, a, levels, logp_old, rows, j), epoch),
                        metrics)
        self.update_old()
        return {**metrics.means(self.acc), **self.reward_summary(gathered, adv)}


def train_awm(model: FlowModel, cfg: AWMConfig, out_dir: str | Path, *, callback: Callback | None = None,
              should_stop: Callable[[], bool] | None = None, resume: bool = True,
              accelerator: Accelerator | None = None) -> TrainResult:
    """Train an Advantage Weighted Matching teacher adapter; arguments as :func:`flowopd.methods.nft.trainer.train_nft`.

    ``OUT/checkpoint`` holds the trained adapter, its EMA target (``old/``) and the optimizer; ``OUT/adapter``
    the exported weights (the live ones unless ``ema`` is on).
    """
    return AWMTrainer(model, cfg, out_dir, accelerator=accelerator, resume=resume).run(callback, should_stop)
