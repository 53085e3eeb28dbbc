"""The Advantage Weighted Matching teacher's config (``kind="awm"``): tiny-world defaults, ``sd35_medium()`` for
SD3.5 Medium (scxue/advantage_weighted_matching's SD3 script), help and bounds on every field, validation naming
the field and the fix.

Registered through :data:`flowopd.config_base.CONFIG_MODULES`; importing it imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config_base import ConfigBase, fail, option
from .configs import LR_SCHEDULES, PRECISIONS, REWARD_NAMES, _weights
from .models.presets import SD35_MEDIUM

__all__ = ["AWMConfig"]


@dataclass
class AWMConfig(ConfigBase, kind="awm"):
    """An Advantage Weighted Matching teacher (arXiv 2509.25050; algorithm.md B 1.11) on one reward, or on several
    with weights: ODE rollouts of the policy, group advantages, and an advantage-weighted flow-matching loss on
    the clean samples (a PPO-clipped ratio of flow-matching "log-probs"), with pulls towards the base and an EMA.

    A marked copy of :class:`flowopd.nft_config.NFTConfig`'s shared fields (rollouts, batches, optimiser, LoRA),
    with AWM's own group in place of NFT's.
    """

    # model and rollouts
    model: str | None = option(None, "base model: tiny checkpoint folder, SD3 pipeline folder, Hub id; None = built-in",
                               group="rollouts")
    seed: int = option(0, "random seed of prompts, noise, timesteps and initialisation", min=0, group="rollouts")
    num_steps: int = option(10, "ODE (Euler) steps of a rollout; its sigmas are the noise levels AWM trains at (the "
                            "code: 14 SA-Solver steps)", min=1, max=1000,
                            group="rollouts")
    eval_steps: int = option(20, "ODE steps of the callback's samples (40 for SD3.5)", min=1, max=1000,
                             group="rollouts")
    guidance: float = option(1.0, "classifier-free guidance scale of the rollouts and of the trained velocity; 1.0 = "
                             "CFG-free, as AWM's code trains (the conditional velocity alone); > 1 trains the "
                             "guided velocity, as Flow-GRPO's code does", min=0, group="rollouts")
    # AWM
    rewards: dict = option({"prefer": 1.0}, "reward name -> weight; several rewards at once is AWM-Mix", group="AWM")
    prompt_tasks: dict = option({"prefer": 1.0}, "task -> sampling weight of its train prompts", group="AWM")
    adv_clip: float = option(5.0, "group advantages are clipped to +-adv_clip before weighting the loss (the code's "
                             "adv_clip_max 5)", min=0, min_open=True, group="AWM")
    global_std: bool = option(True, "normalise advantages by the std of all rewards (the code), else per group",
                              group="AWM")
    clip_range: float = option(1.0, "PPO clip of the ratio exp(logp - logp_old): max(-A ratio, -A clip(ratio, "
                               "1 - c, 1 + c)) (the code's 1; logp = -mean (v - (eps - x0))^2)", min=0,
                               min_open=True, group="AWM")
    timesteps_per_sample: int = option(4, "noise levels each clean sample trains at, drawn without replacement from "
                                       "the rollout's sigmas, with fresh noise each (the code: 6)", min=1,
                                       group="AWM")
    ref_weight: float = option(0.003, "weight of the pull towards the base, mean (v - v_base)^2 (the code's KL beta "
                               "0.003); 0 turns it off", min=0, group="AWM")
    ema_weight: float = option(0.1, "weight of the pull towards an EMA of the policy, mean (v - v_ema)^2 (Flow-"
                               "Factory's recommended 0.1); 0 turns it off", min=0, group="AWM")
    ema_target_decay: float = option(0.9, "the policy EMA the pull aims at: ema <- d ema + (1 - d) theta after each "
                                     "epoch (0 = it copies the policy)", min=0, max=1, max_open=True, group="AWM")
    sample_from_ema: bool = option(False, "roll out from the policy EMA (the code's off_policy) instead of the "
                                   "current policy", group="AWM")
    adapter_name: str = option("teacher", "name of the trained LoRA adapter (its EMA target is <name>_old)",
                               group="AWM")
    # batches
    epochs: int = option(40, "sample-then-train rounds", min=1, group="batches")
    batch_size: int = option(64, "images sampled per epoch and process", min=1, group="batches")
    group_size: int = option(4, "images per prompt (one advantage group); must divide batch_size", min=2,
                             group="batches")
    train_batch_size: int = option(8, "images per forward/backward micro-batch; must divide batch_size",
                                   min=1, group="batches")
    optimizer_steps_per_epoch: int = option(2, "optimizer steps per epoch, accumulating over the rest",
                                            min=1, group="batches")
    # optimiser
    lr: float = option(1e-3, "AdamW learning rate of the LoRA (tiny world; the code's SD3.5 configs use 3e-4)",
                       min=0, min_open=True, group="optimizer")
    weight_decay: float = option(1e-4, "AdamW weight decay", min=0, group="optimizer")
    adam_betas: list = option([0.9, 0.999], "AdamW betas", group="optimizer")
    adam_eps: float = option(1e-8, "AdamW epsilon", min=0, min_open=True, group="optimizer")
    max_grad_norm: float = option(1.0, "gradient-norm clip", min=0, min_open=True, group="optimizer")
    warmup_steps: int = option(0, "linear learning-rate warm-up over this many optimizer steps", min=0,
                               group="optimizer")
    lr_schedule: str = option("constant", "learning rate after the warm-up: constant | cosine | linear",
                              choices=LR_SCHEDULES, group="optimizer")
    # LoRA, EMA, precision, bookkeeping
    lora_rank: int = option(8, "LoRA rank r of a new adapter (32 for SD3.5)", min=1, group="LoRA and EMA")
    lora_alpha: float = option(16.0, "LoRA alpha of a new adapter; the update is (alpha / r) B A (64 for SD3.5)",
                               min=0, min_open=True, group="LoRA and EMA")
    ema: bool = option(False, "export an EMA of the LoRA weights instead of the live ones (off: over a few dozen "
                       "steps the EMA keeps much of the initial weights, and live weights scored higher in "
                       "docs/grpo-tuning.md)", group="LoRA and EMA")
    ema_decay: float = option(0.9, "EMA decay (warmed up as min((1 + k) / (10 + k), decay))",
                              min=0, max=1, min_open=True, max_open=True, group="LoRA and EMA")
    ema_every: int = option(8, "update the EMA every this many optimizer steps", min=1, group="LoRA and EMA")
    mixed_precision: str = option("no", "no | fp16 | bf16 for the frozen base (LoRA weights stay fp32)",
                                  choices=PRECISIONS, group="LoRA and EMA")
    checkpoint_every: int = option(10, "save a resumable checkpoint every this many epochs", min=1, group="bookkeeping")
    sample_every: int = option(10, "send ODE samples of fixed test prompts to the callback every N epochs; 0 = never",
                               min=0, group="bookkeeping")

    def check(self) -> None:
        _weights("rewards", self.rewards, REWARD_NAMES, what="registered reward")
        _weights("prompt_tasks", self.prompt_tasks)
        if self.batch_size % self.group_size:
            fail("group_size", self.group_size, f"it must divide batch_size={self.batch_size} (whole groups)")
        if self.batch_size % self.train_batch_size:
            fail("train_batch_size", self.train_batch_size, f"it must divide batch_size={self.batch_size}")
        micro = self.batch_size // self.train_batch_size
        if micro % self.optimizer_steps_per_epoch:
            fail("optimizer_steps_per_epoch", self.optimizer_steps_per_epoch,
                 f"it must divide the {micro} micro-batches per epoch (batch_size / train_batch_size)")
        if self.timesteps_per_sample > self.num_steps:
            fail("timesteps_per_sample", self.timesteps_per_sample,
                 f"use at most num_steps={self.num_steps}: the noise levels are the rollout's sigmas")
        if len(self.adam_betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.adam_betas):
            fail("adam_betas", self.adam_betas, "use two numbers in [0, 1), e.g. [0.9, 0.999]")
        if not self.adapter_name.strip() or "." in self.adapter_name:
            fail("adapter_name", self.adapter_name, "use a non-empty name without dots, e.g. 'teacher'")

    @classmethod
    def sd35_medium(cls, **overrides: Any) -> AWMConfig:
        """AWM's SD3.5-M settings (its SD3 script): lr 3e-4, group 24, 14 CFG-free ODE steps (the code's
        SA-Solver; Euler here) with 6 trained noise levels per sample, KL beta 0.003, LoRA r 32 / alpha 64."""
        base = dict(model=SD35_MEDIUM, num_steps=14, eval_steps=40, guidance=1.0, lora_rank=32, lora_alpha=64.0,
                    mixed_precision="fp16", checkpoint_every=60, epochs=1000, batch_size=48, group_size=24,
                    train_batch_size=8, lr=3e-4, timesteps_per_sample=6)
        return cls(**{**base, **overrides})
