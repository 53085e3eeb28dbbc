"""The reinforcement-learning configs' shared fields, in one class tree:

* :class:`RLConfig`: what every RL stage has (model, rollouts' size and guidance, batches, optimiser, LoRA, EMA,
  precision, bookkeeping) and the batch checks;
* :class:`SDERLConfig`: the on-policy SDE stages (Flow-GRPO teachers, OPD students): SDE rollouts with
  log-probs, the trained fraction of steps, the PPO clip;
* :class:`ForwardRLConfig`: the forward-process teachers (DiffusionNFT, AWM): CFG-free ODE rollouts, trained
  on the noising process, optionally beside image sets.

A method's config (``flowopd.methods.<kind>.config``) subclasses one of them and may re-declare a field to give
it its own default or help. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..models.presets import SD35_MEDIUM
from ..world.prompt_sets import check_prompt_sets
from .base import ConfigBase, fail, option
from .choices import EMA_WARMUPS, LR_SCHEDULES, PRECISIONS, REPORT_TARGETS
from .fields import check_reward_weights, check_weights

__all__ = ["ForwardRLConfig", "RLConfig", "SDERLConfig"]


@dataclass
class RLConfig(ConfigBase):
    """Fields every RL stage shares: the model, rollout size and guidance, batches, optimiser, LoRA, EMA."""

    # model and rollouts
    model: str | None = option(None, "base model: tiny checkpoint folder, SD3 pipeline folder, Hub id; None = built-in",
                               group="rollouts")
    resolution: int | None = option(None, "image side in pixels of an SD3 base (None = its family's: 512 for SD3.5 "
                                    "Medium, 1024 for Large and SD3); the tiny model draws its own size", min=16,
                                    max=4096, group="rollouts")
    seed: int = option(0, "random seed of prompts, noise and initialisation", min=0, group="rollouts")
    num_steps: int = option(10, "SDE steps per training rollout (the paper's T = 10)",
                            min=1, max=1000, group="rollouts")
    eval_steps: int = option(20, "ODE steps when evaluating (40 for SD3.5)", min=1, max=1000, group="rollouts")
    guidance: float = option(3.0, "classifier-free guidance scale, used in rollouts, training and evaluation",
                             min=0, group="rollouts")
    # batches
    epochs: int = option(40, "sample-then-train rounds", min=1, group="batches")
    batch_size: int = option(64, "images sampled per epoch and process", min=1, group="batches")
    group_size: int = option(4, "images per prompt (one advantage group); must divide batch_size (tiny world: 16 "
                             "prompts x 4 beat 4 x 8, docs/notes/grpo-tuning.md)", min=1, group="batches")
    train_batch_size: int = option(8, "images per forward/backward micro-batch; must divide batch_size",
                                   min=1, group="batches")
    optimizer_steps_per_epoch: int = option(2, "optimizer steps per epoch, accumulating over the rest (2 in the code)",
                                            min=1, group="batches")
    # optimiser
    lr: float = option(1e-3, "AdamW learning rate of the LoRA (tiny world, measured; SD3.5 presets set their own)",
                       min=0, min_open=True, group="optimizer")
    weight_decay: float = option(1e-4, "AdamW weight decay", min=0, group="optimizer")
    adam_betas: list = option([0.9, 0.999], "AdamW betas", group="optimizer")
    adam_eps: float = option(1e-8, "AdamW epsilon", min=0, min_open=True, group="optimizer")
    max_grad_norm: float = option(1.0, "gradient-norm clip", min=0, min_open=True, group="optimizer")
    warmup_steps: int = option(0, "linear learning-rate warm-up over this many optimizer steps (code: 0)",
                               min=0, group="optimizer")
    lr_schedule: str = option("constant", "learning rate after the warm-up: constant (the released codes) | cosine | "
                              "linear, decaying from lr towards 0 one step after the last optimizer step",
                              choices=LR_SCHEDULES, group="optimizer")
    # LoRA, EMA, precision, bookkeeping
    lora_rank: int = option(8, "LoRA rank r of a new adapter (32 for SD3.5)", min=1, group="LoRA and EMA")
    lora_alpha: float = option(16.0, "LoRA alpha of a new adapter; the update is (alpha / r) B A (64 for SD3.5)",
                               min=0, min_open=True, group="LoRA and EMA")
    ema: bool = option(True, "keep an EMA of the LoRA weights and export and evaluate it (false: the live weights)",
                       group="LoRA and EMA")
    ema_decay: float = option(0.9, "EMA decay, reached after the warm-up (ema_warmup)",
                              min=0, max=1, min_open=True, max_open=True, group="LoRA and EMA")
    ema_warmup: str = option("mean", "mean: running mean of the live weights until ema_decay is reached | legacy: "
                             "min((1 + step) / (10 + step), decay) from the initial weights (docs/method.md, EMA)",
                             choices=EMA_WARMUPS, group="LoRA and EMA")
    ema_every: int = option(8, "update the EMA every this many optimizer steps", min=1, group="LoRA and EMA")
    mixed_precision: str = option("no", "no | fp16 | bf16 for the frozen base (LoRA weights stay fp32)",
                                  choices=PRECISIONS, group="LoRA and EMA")
    gradient_checkpointing: bool | None = option(None, "recompute the transformer's activations in the backward "
                                                 "pass (less memory, a slower step); None = on for SD3, off for "
                                                 "the tiny model", group="LoRA and EMA")
    report_to: str = option("none", "also send the run's metrics and samples to: none | tensorboard (event files in "
                            "the run folder) | wandb (offline unless configured); the package is optional",
                            choices=REPORT_TARGETS, group="LoRA and EMA")
    prompt_sets: dict = option({}, "task -> folder of your own prompts in Flow-GRPO's layout (train.txt/test.txt or "
                               "train_metadata.jsonl/test_metadata.jsonl) instead of the tiny world's splits",
                               group="rollouts")
    cache_prompt_embeddings: bool | None = option(None, "encode the run's prompts once and keep the text "
                                                  "encoders off the accelerator while training; None = on for "
                                                  "SD3, off for the tiny model", group="LoRA and EMA")
    decode_chunk: int = option(0, "latents the rollout's VAE decode takes at a time (its memory grows with it); 0 = "
                               "the whole batch at once", min=0, group="LoRA and EMA")
    checkpoint_every: int = option(10, "save a resumable checkpoint every this many epochs", min=1, group="bookkeeping")
    sample_every: int = option(10, "send ODE samples of fixed test prompts to the callback every N epochs; 0 = never",
                               min=0, group="bookkeeping")

    def _check_batches(self) -> None:
        """Whole groups and micro-batches per epoch, AdamW's betas and the prompt sets (bounds and choices are
        checked already)."""
        if self.batch_size % self.group_size:
            fail("group_size", self.group_size, f"it must divide batch_size={self.batch_size} (whole groups)")
        if self.batch_size % self.train_batch_size:
            fail("train_batch_size", self.train_batch_size, f"it must divide batch_size={self.batch_size}")
        micro = self.batch_size // self.train_batch_size
        if micro % self.optimizer_steps_per_epoch:
            fail("optimizer_steps_per_epoch", self.optimizer_steps_per_epoch,
                 f"it must divide the {micro} micro-batches per epoch (batch_size / train_batch_size)")
        if len(self.adam_betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.adam_betas):
            fail("adam_betas", self.adam_betas, "use two numbers in [0, 1), e.g. [0.9, 0.999]")
        check_prompt_sets(self.prompt_sets)  # a set that cannot be read fails here, before a run starts

    def total_steps(self) -> int:
        """The optimizer steps of the whole run (progress bars, learning-rate schedules)."""
        return self.epochs * self.optimizer_steps_per_epoch


@dataclass
class SDERLConfig(RLConfig):
    """The on-policy SDE stages (Flow-GRPO teachers, OPD students): SDE rollouts with log-probs, the trained steps,
    the PPO clip. Why each default: docs/method.md, "SDE step" and "GRPO"."""

    noise_level: float = option(0.7, "SDE noise level a: std_dev_t = a sqrt(t / (1 - t)) (0.7 in the paper)",
                                min=0, max=2, min_open=True, group="rollouts")
    timestep_fraction: float = option(0.8, "fraction of rollout steps trained, the first ones (tiny world 0.8 = 8 of "
                                      "10; Flow-GRPO's 0.99 trains 9, which the SD3.5 presets keep)",
                                      min=0, max=1, min_open=True, group="rollouts")
    steps_per_microbatch: int = option(0, "train each micro-batch on this many trained steps drawn at random (an "
                                       "unbiased estimate of the mean over all); 0 = every trained step (Flow-GRPO)",
                                       min=0, group="rollouts")
    sde_window: int = option(0, "draw SDE noise on a window of this many consecutive trained steps only (ODE "
                             "elsewhere) and train the window alone (Flow-GRPO-Fast, MixGRPO); 0 = every trained step",
                             min=0, group="rollouts")
    clean_untrained_steps: bool = option(True, "run the untrained last rollout steps as ODE steps, so rewards see "
                                         "clean images; false = Flow-GRPO's all-SDE rollouts", group="rollouts")
    shared_group_noise: bool = option(False, "give every image of a prompt group the same initial noise (DanceGRPO); "
                                      "false = Flow-GRPO's independent noise", group="rollouts")
    antithetic_noise: bool = option(False, "give images 2k and 2k + 1 of a group opposite SDE noise (z and -z); needs "
                                    "an even group_size and train_batch_size", group="rollouts")
    clip_range: float = option(1e-4, "PPO ratio clip epsilon (log-probs are per-dimension means, hence tiny)",
                               min=0, min_open=True, group="optimizer")
    adv_clip: float = option(5.0, "advantages are clipped to +-adv_clip", min=0, min_open=True, group="optimizer")
    eval_every: int = option(10, "evaluate every this many epochs", min=1, group="bookkeeping")

    def _check_common(self) -> None:
        """The cross-field invariants of both stages (types, bounds and choices are checked already)."""
        if int(self.num_steps * self.timestep_fraction) < 1:
            fail("timestep_fraction", self.timestep_fraction, "use a fraction in (0, 1] that trains >= 1 step")
        self._check_batches()
        if self.steps_per_microbatch > self.trained_steps:
            fail("steps_per_microbatch", self.steps_per_microbatch,
                 f"use 0 (all) or a whole number up to the {self.trained_steps} trained steps "
                 "(num_steps x timestep_fraction)")
        if self.sde_window > self.trained_steps:
            fail("sde_window", self.sde_window,
                 f"use 0 (off) or a whole number of steps up to the {self.trained_steps} trained steps "
                 "(num_steps x timestep_fraction)")
        if self.sde_window and self.steps_per_microbatch > self.sde_window:
            fail("steps_per_microbatch", self.steps_per_microbatch,
                 f"use at most sde_window={self.sde_window}: only the window's steps train")
        if self.antithetic_noise and (self.group_size % 2 or self.train_batch_size % 2):
            fail("antithetic_noise", self.antithetic_noise,
                 f"it pairs images: use an even group_size and train_batch_size (got {self.group_size} and "
                 f"{self.train_batch_size}), or false")

    @property
    def trained_steps(self) -> int:  # the first int(num_steps * timestep_fraction) rollout steps train
        return int(self.num_steps * self.timestep_fraction)

    @classmethod
    def _sd35(cls, **values: Any) -> Any:
        base = dict(model=SD35_MEDIUM, num_steps=10, eval_steps=40, guidance=4.5, lora_rank=32, lora_alpha=64.0,
                    mixed_precision="fp16", checkpoint_every=60, eval_every=60, epochs=1000,
                    timestep_fraction=0.99, clean_untrained_steps=False, decode_chunk=SD35_DECODE_CHUNK)
        return cls(**{**base, **values})


SD35_DECODE_CHUNK = 8  # the rollout decodes 8 images at a time on SD3.5: a 48-image batch in one call needs 24 GiB


@dataclass
class ForwardRLConfig(RLConfig):
    """The forward-process teachers (DiffusionNFT, AWM): CFG-free ODE rollouts of the policy, group advantages,
    trained on the noising process. A subclass adds its algorithm's group (with ``rewards``, ``prompt_tasks``,
    ``timesteps_per_sample`` and ``adapter_name``, which :meth:`check` reads)."""

    seed: int = option(0, "random seed of prompts, noise, timesteps and initialisation", min=0, group="rollouts")
    num_steps: int = option(10, "ODE (Euler) steps of a rollout; its sigmas are the noise levels trained at",
                            min=1, max=1000, group="rollouts")
    eval_steps: int = option(20, "ODE steps of the callback's samples (40 for SD3.5)", min=1, max=1000,
                             group="rollouts")
    guidance: float = option(1.0, "CFG scale of the rollouts and of the trained velocity; 1.0 = CFG-free (the "
                             "conditional velocity alone, as forward-process RL is designed)", min=0, group="rollouts")
    group_size: int = option(4, "images per prompt (one advantage group); must divide batch_size", min=2,
                             group="batches")
    lr: float = option(1e-3, "AdamW learning rate of the LoRA (tiny world; the code's SD3.5 configs use 3e-4)",
                       min=0, min_open=True, group="optimizer")
    ema: bool = option(False, "export an EMA of the LoRA weights instead of the live ones (off: the live weights "
                       "scored higher over a few dozen steps, docs/notes/grpo-tuning.md)", group="LoRA and EMA")
    sft_data: dict = option({}, "task -> image-set folder trained with the plain flow-matching loss beside the RL "
                            "loss, every task weighted alike (the joint <source>-mix baseline); {} = none",
                            group="batches")

    def check(self) -> None:
        check_reward_weights("rewards", self.rewards)
        check_weights("prompt_tasks", self.prompt_tasks)
        self._check_batches()
        if self.timesteps_per_sample > self.num_steps:
            fail("timesteps_per_sample", self.timesteps_per_sample,
                 f"use at most num_steps={self.num_steps}: the noise levels are the rollout's sigmas")
        for task, folder in self.sft_data.items():
            if not isinstance(folder, str) or not folder:
                fail("sft_data", self.sft_data, f"give task {task!r} an image-set folder (a path string)")
            if task in self.prompt_tasks:
                fail("sft_data", self.sft_data, f"task {task!r} is also in prompt_tasks: teach a task by its reward "
                     "or by its image set, not both")
        if not self.adapter_name.strip() or "." in self.adapter_name:
            fail("adapter_name", self.adapter_name, "use a non-empty name without dots, e.g. 'teacher'")
