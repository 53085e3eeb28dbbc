"""The DiffusionNFT teacher's config (``kind="nft"``): tiny-world defaults, ``sd35_medium()`` for SD3.5 Medium
(DiffusionNFT's ``config/nft.py``), help and bounds on every field, validation naming the field and the fix.

Kept beside :mod:`flowopd.configs` (whose shared pieces it uses) and registered through
:data:`flowopd.config_base.CONFIG_MODULES`; importing it imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config_base import ConfigBase, fail, option
from .configs import EMA_WARMUPS, LR_SCHEDULES, PRECISIONS, _reward_weights, _weights, sd35_reward_overrides
from .models.presets import SD35_MEDIUM

__all__ = ["ForwardRLConfig", "NFTConfig"]


@dataclass
class ForwardRLConfig(ConfigBase):
    """Fields the forward-process teachers (DiffusionNFT, AWM) share: CFG-free ODE rollouts of a policy, group
    advantages, an optimizer over a LoRA. A marked copy of the on-policy stages' shared fields
    (``flowopd.configs._RLConfig``) without the SDE fields, which forward-process training does not use. Each
    subclass adds its algorithm's group (with ``rewards``, ``prompt_tasks``, ``timesteps_per_sample`` and
    ``adapter_name``, which :meth:`check` reads) and may re-declare a field to give it its own help.
    """

    # model and rollouts
    model: str | None = option(None, "base model: tiny checkpoint folder, SD3 pipeline folder, Hub id; None = built-in",
                               group="rollouts")
    seed: int = option(0, "random seed of prompts, noise, timesteps and initialisation", min=0, group="rollouts")
    num_steps: int = option(10, "ODE (Euler) steps of a rollout; its sigmas are the noise levels trained at",
                            min=1, max=1000, group="rollouts")
    eval_steps: int = option(20, "ODE steps of the callback's samples (40 for SD3.5)", min=1, max=1000,
                             group="rollouts")
    guidance: float = option(1.0, "classifier-free guidance scale of the rollouts and of the trained velocity; 1.0 = "
                             "CFG-free (the conditional velocity alone, as forward-process RL is designed); "
                             "> 1 trains the guided velocity, as Flow-GRPO's code does", min=0, group="rollouts")
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
    ema_decay: float = option(0.9, "EMA decay, reached after the warm-up (ema_warmup)",
                              min=0, max=1, min_open=True, max_open=True, group="LoRA and EMA")
    ema_warmup: str = option("mean", "mean: the first EMA update copies the live weights, the next keep their running "
                             "mean until ema_decay is reached | legacy: min((1 + step) / (10 + step), decay) from "
                             "the initial weights", choices=EMA_WARMUPS, group="LoRA and EMA")
    ema_every: int = option(8, "update the EMA every this many optimizer steps", min=1, group="LoRA and EMA")
    mixed_precision: str = option("no", "no | fp16 | bf16 for the frozen base (LoRA weights stay fp32)",
                                  choices=PRECISIONS, group="LoRA and EMA")
    sft_data: dict = option({}, "task -> image-set folder (flowopd world dataset) trained with the plain flow-matching "
                            "loss beside the RL loss, every task weighted alike: the joint <source>-mix baseline "
                            "of supervised and reward teachers; {} = none", group="batches")
    checkpoint_every: int = option(10, "save a resumable checkpoint every this many epochs", min=1, group="bookkeeping")
    sample_every: int = option(10, "send ODE samples of fixed test prompts to the callback every N epochs; 0 = never",
                               min=0, group="bookkeeping")

    def check(self) -> None:
        _reward_weights("rewards", self.rewards)
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
        for task, folder in self.sft_data.items():
            if not isinstance(folder, str) or not folder:
                fail("sft_data", self.sft_data, f"give task {task!r} an image-set folder (a path string)")
            if task in self.prompt_tasks:
                fail("sft_data", self.sft_data, f"task {task!r} is also in prompt_tasks: teach a task by its reward "
                     "or by its image set, not both")
        if not self.adapter_name.strip() or "." in self.adapter_name:
            fail("adapter_name", self.adapter_name, "use a non-empty name without dots, e.g. 'teacher'")


@dataclass
class NFTConfig(ForwardRLConfig, kind="nft"):
    """A DiffusionNFT teacher (arXiv 2509.16117; algorithm.md B 1.10) on one reward, or on several with weights
    (the NFT-Mix baseline): ODE rollouts, optimality weights from group advantages, the implicit positive and
    negative policies of the trained and the frozen old adapter, trained on the forward (noising) process.

    Rollout, batch, optimiser and LoRA fields and their checks are :class:`ForwardRLConfig`'s.
    """

    # rollouts (re-declared for their own help; the other shared fields are ForwardRLConfig's)
    num_steps: int = option(10, "ODE (Euler) steps of a rollout; its sigmas are the noise levels NFT trains at (10 "
                            "in the code's single-reward configs, 25 for multi-reward)", min=1, max=1000,
                            group="rollouts")
    guidance: float = option(1.0, "classifier-free guidance scale of the rollouts and of the trained velocity; 1.0 = "
                             "CFG-free, as DiffusionNFT is designed (it trains the conditional velocity alone); "
                             "> 1 trains the guided velocity, as Flow-GRPO's code does", min=0, group="rollouts")
    # NFT
    rewards: dict = option({"prefer": 1.0}, "reward name -> weight; several rewards at once is NFT-Mix", group="NFT")
    prompt_tasks: dict = option({"prefer": 1.0}, "task -> sampling weight of its train prompts", group="NFT")
    beta: float = option(1.0, "mixing weight beta: v+ = beta v + (1 - beta) v_old, v- = (1 + beta) v_old - beta v "
                         "(1.0 in the code's configs, 0.1 for OCR and multi-reward)", min=0, min_open=True, group="NFT")
    adv_clip: float = option(5.0, "optimality r = 1/2 + 1/2 clip(A / adv_clip, -1, 1) of a group advantage A (the "
                             "paper's Z_c; the code's adv_clip_max 5, which also scales the loss by "
                             "adv_clip / beta)", min=0, min_open=True, group="NFT")
    global_std: bool = option(True, "normalise advantages by the std of all rewards (the code), else per group",
                              group="NFT")
    adaptive_weight: bool = option(True, "weight each sample's squared x0 error by 1 / its stop-gradient mean "
                                   "absolute error (the paper's adaptive weighting, the code); false = the plain "
                                   "velocity MSE of the paper's loss equation", group="NFT")
    timesteps_per_sample: int = option(4, "noise levels each clean sample trains at, drawn without replacement from "
                                       "the rollout's sigmas, with fresh noise each (the code trains 9 of 10)",
                                       min=1, group="NFT")
    ref_weight: float = option(1e-4, "weight of the pull towards the base, mean (v - v_base)^2 (the code's 1e-4); "
                               "0 turns it off", min=0, group="NFT")
    old_decay_rate: float = option(0.001, "the old adapter's soft update after each epoch: old <- d old + (1 - d) "
                                   "theta, d = min(old_decay_rate (step - old_decay_flat), old_decay_max); "
                                   "0 = the old adapter copies the policy (fully on-policy)", min=0, group="NFT")
    old_decay_max: float = option(0.5, "the soft update's largest decay d (the code: 0.5; OCR 0.999)",
                                  min=0, max=1, max_open=True, group="NFT")
    old_decay_flat: int = option(0, "optimizer steps before the decay starts to grow (d = 0 until then; OCR: 75)",
                                 min=0, group="NFT")
    adapter_name: str = option("teacher", "name of the trained LoRA adapter (the old one is <name>_old)", group="NFT")
    @classmethod
    def sd35_medium(cls, **overrides: Any) -> NFTConfig:
        """DiffusionNFT's SD3.5-M settings (``config/nft.py``): lr 3e-4, group 24, beta 1, 10 CFG-free ODE
        steps with 9 trained noise levels per sample, LoRA r 32 / alpha 64."""
        base = dict(model=SD35_MEDIUM, num_steps=10, eval_steps=40, guidance=1.0, lora_rank=32, lora_alpha=64.0,
                    mixed_precision="fp16", checkpoint_every=60, epochs=1000, batch_size=48, group_size=24,
                    train_batch_size=8, lr=3e-4, timesteps_per_sample=9)
        return cls(**{**base, **sd35_reward_overrides(cls, overrides), **overrides})
