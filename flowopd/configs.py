"""Configs of the three stages (GRPO teachers, cold start, distillation): tiny-world defaults, ``sd35_medium()``
for SD3.5 Medium (algorithm.md B 2), help, bounds and choices on every field (:mod:`flowopd.config_base`),
validation naming the field and the fix, and a ``to_json``/``from_json`` round-trip (a run's snapshot).

The pretraining, model and evaluation configs live in :mod:`flowopd.pretrain_config` and
:mod:`flowopd.eval_config` and are re-exported here, so importing this module registers every library
config kind without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .config_base import ConfigBase, fail, option
from .eval_config import EvalConfig
from .models.presets import SD35_MEDIUM
from .pretrain_config import PretrainConfig, TinyConfig
from .reward_names import SD35_TASK_REWARDS, reward_problem, sd35_rewards
from .sft_config import SFTConfig
from .world.prompts import MIXED, MIXED_TASKS, PROMPT_SETS, TASKS

# These three mirror flowopd.opd (a test checks it); not imported, so configs load without torch.
LOSS_MODES, WEIGHTINGS = ("kl", "pg", "paper"), ("code", "paper", "uniform")
ROUTINGS = ("per-sample", "alternate", "blend")
COLDSTART_MODES = ("merge", "merge-avg", "sft", "none")
MERGE_COMBINATIONS = ("cat", "svd")
PRECISIONS = ("no", "fp16", "bf16")
EMA_WARMUPS = ("mean", "legacy")  # flowopd.trainers.ema's warm-ups
LR_SCHEDULES = ("constant", "cosine", "linear")
# The names in flowopd.rewards.REWARDS (a test checks it), so a GRPO config is checked without importing torch;
# flowopd.rewards.register_reward adds a new name here too. Real-image rewards (ocr, pickscore, geneval,
# remote:URL, ...) are named as flowopd.reward_names says.
REWARD_NAMES: list[str] = ["compose", "text", "prefer", "quality"]
_fail = fail  # the short name the checks below use
__all__ = ["ColdStartConfig", "EvalConfig", "GRPOConfig", "OPDConfig", "PretrainConfig", "SFTConfig", "TinyConfig"]


def _weights(name: str, value: Any, allowed: tuple[str, ...] | list[str] = TASKS, what: str = "task") -> None:
    if not isinstance(value, dict) or not value:
        _fail(name, value, 'use a non-empty mapping such as {"compose": 1.0}')
    for key, w in value.items():
        if key not in allowed:
            _fail(name, value, f"{key!r} is not a {what}; use names from {', '.join(allowed)}")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0 or not math.isfinite(w):
            _fail(name, value, f"the weight of {key!r} must be a finite number >= 0")
    if sum(value.values()) <= 0:
        _fail(name, value, "give at least one entry a positive weight")


def _reward_weights(name: str, value: Any) -> None:
    """Reward -> weight: registered rewards (REWARD_NAMES) and real-image ones (:mod:`flowopd.reward_names`)."""
    for key in value if isinstance(value, dict) else ():
        problem = reward_problem(key, REWARD_NAMES)
        if problem:
            _fail(name, value, problem)
    _weights(name, value, list(value) if isinstance(value, dict) else REWARD_NAMES, what="reward")


def _task_rewards(value: Any) -> None:
    """``task_rewards``: tasks mapped to rewards a config may use."""
    if not isinstance(value, dict):
        _fail("task_rewards", value, 'map tasks to reward names, e.g. {"text": "ocr"}')
    for task, reward in value.items():
        if task not in TASKS:
            _fail("task_rewards", value, f"{task!r} is not a task; use names from {', '.join(TASKS)}")
        problem = reward_problem(reward, REWARD_NAMES)
        if problem:
            _fail("task_rewards", value, problem)


def task_reward(task_rewards: dict, task: str) -> str:
    """The reward that scores ``task``: ``task_rewards[task]``, else the tiny world's reward named ``task``."""
    return task_rewards.get(task, task)


def sd35_reward_overrides(cls: type, overrides: dict) -> dict:
    """``{"rewards": ...}``: the paper's reward of each prompt task (GenEval, OCR, PickScore, DeQA), for an SD3.5
    preset whose overrides name no rewards (flowopd.reward_names.SD35_TASK_REWARDS)."""
    if "rewards" in overrides:
        return {}
    rewards = sd35_rewards(overrides.get("prompt_tasks", cls.field_info("prompt_tasks").default))
    return {"rewards": rewards} if rewards else {}


@dataclass
class _RLConfig(ConfigBase):
    """Fields shared by the two on-policy stages (GRPO and OPD): rollouts, batches, optimiser, LoRA, EMA."""

    # model and rollouts
    model: str | None = option(None, "base model: tiny checkpoint folder, SD3 pipeline folder, Hub id; None = built-in",
                               group="rollouts")
    seed: int = option(0, "random seed of prompts, noise and initialisation", min=0, group="rollouts")
    num_steps: int = option(10, "SDE steps per training rollout (the paper's T = 10)",
                            min=1, max=1000, group="rollouts")
    eval_steps: int = option(20, "ODE steps when evaluating (40 for SD3.5)", min=1, max=1000, group="rollouts")
    guidance: float = option(3.0, "classifier-free guidance scale, used in rollouts, training and evaluation",
                             min=0, group="rollouts")
    noise_level: float = option(0.7, "SDE noise level a: std_dev_t = a sqrt(t / (1 - t)) (0.7 in the paper)",
                                min=0, max=2, min_open=True, group="rollouts")
    timestep_fraction: float = option(0.8, "fraction of rollout steps trained (tiny world: the first 8 of "
                                      "10; Flow-GRPO's 0.99 trains 9, which the SD3.5 presets keep)",
                                      min=0, max=1, min_open=True, group="rollouts")
    steps_per_microbatch: int = option(0, "train each micro-batch on this many of the trained steps, drawn at random "
                                       "per micro-batch and epoch (an unbiased estimate of the mean over all of "
                                       "them); 0 = every trained step (Flow-GRPO). Fewer backward passes per image "
                                       "let more prompts fit the same compute", min=0, group="rollouts")
    sde_window: int = option(0, "draw SDE noise on a window of this many consecutive trained steps only, run every "
                             "other step as an ODE step, and train the window alone (Flow-GRPO-Fast, MixGRPO): a "
                             "group's rewards then differ only by noise its trained log-probs are credited with, and "
                             "an image costs a backward pass per window step, not per trained step. The window's "
                             "start is drawn per epoch from the run's seed among the trained steps; 0 = every "
                             "trained step draws noise and trains (Flow-GRPO)", min=0, group="rollouts")
    clean_untrained_steps: bool = option(True, "run the untrained last rollout steps as ODE steps so rewards see clean "
                                         "images (tiny world: SDE noise left by step 9 of 10 in pixel space drops "
                                         "the quality reward of rollouts to 0.005, docs/grpo-tuning.md); False = "
                                         "Flow-GRPO's all-SDE rollouts", group="rollouts")
    shared_group_noise: bool = option(False, "give every image of a prompt group the same initial noise, so the "
                                      "group's rewards differ only by the SDE noise the log-probs are "
                                      "credited with (DanceGRPO); False = Flow-GRPO's independent noise",
                                      group="rollouts")
    antithetic_noise: bool = option(False, "give images 2k and 2k + 1 of a group opposite SDE noise (z and -z) at "
                                    "every step, so their reward difference keeps the part of the reward that is odd "
                                    "in the noise, which the policy gradient estimates; needs an even "
                                    "group_size and train_batch_size; False = independent noise", group="rollouts")
    # batches
    epochs: int = option(40, "sample-then-train rounds", min=1, group="batches")
    batch_size: int = option(64, "images sampled per epoch and process", min=1, group="batches")
    group_size: int = option(4, "images per prompt (one GRPO group); must divide batch_size (tiny world: 16 prompts "
                             "x 4 beat 4 x 8, docs/grpo-tuning.md)", min=1, group="batches")
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
    clip_range: float = option(1e-4, "PPO ratio clip epsilon (log-probs are per-dimension means, hence tiny)",
                               min=0, min_open=True, group="optimizer")
    adv_clip: float = option(5.0, "advantages are clipped to +-adv_clip", min=0, min_open=True, group="optimizer")
    # LoRA, EMA, precision, bookkeeping
    lora_rank: int = option(8, "LoRA rank r of a new adapter (32 for SD3.5)", min=1, group="LoRA and EMA")
    lora_alpha: float = option(16.0, "LoRA alpha of a new adapter; the update is (alpha / r) B A (64 for SD3.5)",
                               min=0, min_open=True, group="LoRA and EMA")
    ema: bool = option(True, "keep an EMA of the LoRA weights and export and evaluate it (false: the live weights)",
                       group="LoRA and EMA")
    ema_decay: float = option(0.9, "EMA decay, reached after the warm-up (ema_warmup)",
                              min=0, max=1, min_open=True, max_open=True, group="LoRA and EMA")
    ema_warmup: str = option("mean", "mean: the first EMA update copies the live weights, the next keep their running "
                             "mean until ema_decay is reached (no initial weight left behind) | legacy: "
                             "min((1 + step) / (10 + step), decay) from the initial weights, which leaves a third "
                             "of a 16-step run's EMA at the base (docs/grpo-tuning.md; runs before 2026-12-02)",
                             choices=EMA_WARMUPS, group="LoRA and EMA")
    ema_every: int = option(8, "update the EMA every this many optimizer steps", min=1, group="LoRA and EMA")
    mixed_precision: str = option("no", "no | fp16 | bf16 for the frozen base (LoRA weights stay fp32)",
                                  choices=PRECISIONS, group="LoRA and EMA")
    checkpoint_every: int = option(10, "save a resumable checkpoint every this many epochs", min=1, group="bookkeeping")
    eval_every: int = option(10, "evaluate every this many epochs", min=1, group="bookkeeping")
    warmup_steps: int = option(0, "linear learning-rate warm-up over this many optimizer steps (code: 0)",
                               min=0, group="optimizer")
    lr_schedule: str = option("constant", "learning rate after the warm-up: constant (Flow-GRPO's code) | cosine | "
                              "linear; cosine and linear decay from lr towards 0, reached one step after the "
                              "last optimizer step (epochs x optimizer_steps_per_epoch)",
                              choices=LR_SCHEDULES, group="optimizer")
    sample_every: int = option(10, "send ODE samples of fixed test prompts to the callback every N epochs; 0 = never",
                               min=0, group="bookkeeping")

    def _check_common(self) -> None:
        """The cross-field invariants of both stages (types, bounds and choices are checked already)."""
        if int(self.num_steps * self.timestep_fraction) < 1:
            _fail("timestep_fraction", self.timestep_fraction, "use a fraction in (0, 1] that trains >= 1 step")
        if self.batch_size % self.group_size:
            _fail("group_size", self.group_size, f"it must divide batch_size={self.batch_size} (whole groups)")
        if self.batch_size % self.train_batch_size:
            _fail("train_batch_size", self.train_batch_size, f"it must divide batch_size={self.batch_size}")
        micro = self.batch_size // self.train_batch_size
        if micro % self.optimizer_steps_per_epoch:
            _fail("optimizer_steps_per_epoch", self.optimizer_steps_per_epoch,
                  f"it must divide the {micro} micro-batches per epoch (batch_size / train_batch_size)")
        if self.steps_per_microbatch > self.trained_steps:
            _fail("steps_per_microbatch", self.steps_per_microbatch,
                  f"use 0 (all) or a whole number up to the {self.trained_steps} trained steps "
                  "(num_steps x timestep_fraction)")
        if self.sde_window > self.trained_steps:
            _fail("sde_window", self.sde_window,
                  f"use 0 (off) or a whole number of steps up to the {self.trained_steps} trained steps "
                  "(num_steps x timestep_fraction)")
        if self.sde_window and self.steps_per_microbatch > self.sde_window:
            _fail("steps_per_microbatch", self.steps_per_microbatch,
                  f"use at most sde_window={self.sde_window}: only the window's steps train")
        if self.antithetic_noise and (self.group_size % 2 or self.train_batch_size % 2):
            _fail("antithetic_noise", self.antithetic_noise,
                  f"it pairs images: use an even group_size and train_batch_size (got {self.group_size} and "
                  f"{self.train_batch_size}), or false")
        if len(self.adam_betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.adam_betas):
            _fail("adam_betas", self.adam_betas, "use two numbers in [0, 1), e.g. [0.9, 0.999]")

    @property
    def trained_steps(self) -> int:  # the first int(num_steps * timestep_fraction) rollout steps train
        return int(self.num_steps * self.timestep_fraction)

    @classmethod
    def _sd35(cls, **values: Any) -> Any:
        base = dict(model=SD35_MEDIUM, num_steps=10, eval_steps=40, guidance=4.5, lora_rank=32, lora_alpha=64.0,
                    mixed_precision="fp16", checkpoint_every=60, eval_every=60, epochs=1000,
                    timestep_fraction=0.99, clean_untrained_steps=False)
        return cls(**{**base, **values})


@dataclass
class GRPOConfig(_RLConfig, kind="grpo"):
    """Stage 1: a Flow-GRPO teacher on one reward, or on several with weights (the GRPO-Mix baseline)."""

    rewards: dict = option({"compose": 1.0}, "reward name -> weight; several rewards at once is GRPO-Mix", group="GRPO")
    prompt_tasks: dict = option({"compose": 1.0}, "task -> sampling weight of its train prompts", group="GRPO")
    beta: float = option(0.04, "weight of the KL to the base model (adapters disabled); 0 turns it off",
                         min=0, group="GRPO")
    global_std: bool = option(True, "normalise advantages by the std of all rewards (Flow-GRPO), else per group",
                              group="GRPO")
    mask_zero_std: bool = option(True, "skip groups whose rewards are all equal (no learning signal)", group="GRPO")
    adapter_name: str = option("teacher", "name of the trained LoRA adapter", group="GRPO")

    def check(self) -> None:
        self._check_common()
        _reward_weights("rewards", self.rewards)
        _weights("prompt_tasks", self.prompt_tasks)
        if self.group_size < 2:
            _fail("group_size", self.group_size, "GRPO needs >= 2 images per prompt for a group baseline")

    @classmethod
    def sd35_medium(cls, **overrides: Any) -> GRPOConfig:
        """Flow-GRPO's SD3.5-M teacher settings (B 2): G 24, lr 3e-4, beta 0.04; rewards: the paper's reward of
        each prompt task unless given (compose -> geneval, text -> ocr, prefer -> pickscore, quality -> deqa)."""
        return cls._sd35(**{"batch_size": 48, "group_size": 24, "train_batch_size": 8, "lr": 3e-4,
                            **sd35_reward_overrides(cls, overrides), **overrides})


@dataclass
class ColdStartConfig(ConfigBase, kind="coldstart"):
    """The student's initial LoRA: merged teachers, their element-wise average, SFT on teacher samples, or none."""

    mode: str = option("merge", "merge (exact delta merge) | merge-avg (code's A/B average) | sft | none (fresh LoRA)",
                       choices=COLDSTART_MODES, group="merge")
    teachers: dict = option({}, "task -> teacher adapter folder", group="merge")
    weights: dict = option({}, "task -> merge weight; empty = equal weights summing to 1", group="merge")
    combination: str = option("cat", "merge mode: cat (exact, rank = sum of ranks) | svd (truncated to svd_rank)",
                              choices=MERGE_COMBINATIONS, group="merge")
    svd_rank: int | None = option(None, "rank of an svd merge; None = the largest teacher rank", min=1, group="merge")
    model: str | None = option(None, "base model (as in the GRPO config); None = the built-in tiny model", group="SFT")
    seed: int = option(0, "random seed", min=0, group="SFT")
    lora_rank: int = option(8, "rank of the SFT / none student LoRA", min=1, group="SFT")
    lora_alpha: float = option(16.0, "alpha of the SFT / none student LoRA", min=0, min_open=True, group="SFT")
    sft_steps: int = option(200, "SFT optimizer steps", min=1, group="SFT")
    sft_batch_size: int = option(32, "SFT images per step", min=1, group="SFT")
    sft_lr: float = option(1e-4, "SFT learning rate", min=0, min_open=True, group="SFT")
    sft_samples_per_task: int = option(256, "teacher samples drawn per task for SFT (ODE, eval_steps, guidance)",
                                       min=1, group="SFT")
    sft_best_of: int = option(1, "keep the best of this many samples per prompt by the task reward (1 = keep all)",
                              min=1, group="SFT")
    sft_beta_base: float = option(0.0, "weight of an MSE to the base model's velocity during SFT", min=0, group="SFT")
    task_rewards: dict = option({}, "task -> the reward sft_best_of ranks its samples by (e.g. {\"text\": \"ocr\"}); "
                                "a task not named: the tiny world's reward of its name", group="SFT")
    eval_steps: int = option(20, "ODE steps of the teacher samples (40 for SD3.5)", min=1, max=1000, group="SFT")
    guidance: float = option(3.0, "CFG scale of the teacher samples", min=0, group="SFT")

    def check(self) -> None:
        if self.mode != "none" and not self.teachers:
            _fail("teachers", self.teachers, f"mode {self.mode!r} needs teachers (task -> folder), or use mode 'none'")
        bad = sorted(set(self.teachers) - set(TASKS))
        if bad:
            _fail("teachers", self.teachers, f"{bad} are not tasks; use names from {', '.join(TASKS)}")
        if self.weights:
            _weights("weights", self.weights)
            if set(self.weights) != set(self.teachers):
                _fail("weights", self.weights, f"give one weight per teacher task {sorted(self.teachers)}, or none")
        _task_rewards(self.task_rewards)

    def merge_weights(self) -> dict[str, float]:
        """Task -> weight, equal weights summing to 1 when none are given."""
        return dict(self.weights) if self.weights else {t: 1 / len(self.teachers) for t in self.teachers}

    @classmethod
    def sd35_medium(cls, **overrides: Any) -> ColdStartConfig:
        """SD3.5-M: r 32 / alpha 64, 40-step teacher samples at CFG 4.5, SFT lr 1e-4 (B 6 A9)."""
        return cls(**{"model": SD35_MEDIUM, "lora_rank": 32, "lora_alpha": 64.0, "eval_steps": 40, "guidance": 4.5,
                      "sft_steps": 1000, "sft_batch_size": 24, "task_rewards": dict(SD35_TASK_REWARDS), **overrides})


@dataclass
class OPDConfig(_RLConfig, kind="opd"):
    """Stage 2: on-policy distillation of the routed teachers into the student, with MAR."""

    teachers: dict = option({}, "task -> teacher adapter folder; every prompt task needs one", group="distillation")
    init: str | None = option(None, "student's initial adapter folder (a cold start); None = a fresh LoRA",
                              group="distillation")
    prompt_tasks: dict = option({"compose": 1.0, "text": 1.0, "prefer": 1.0},
                                "task -> sampling weight of its train prompts (per-sample and blend routing); "
                                "'mixed' adds the mixed split's prompts, which touch compose and text at once "
                                "(both need a teacher)", group="distillation")
    routing: str = option("per-sample", "per-sample (each prompt to its task's teacher; a mixed prompt to its "
                          "highest-weight task, ties to the first of compose, text, prefer, quality) | alternate (a "
                          "task per epoch) | blend (the paper's alpha_k(c): a target mixing the teachers of the "
                          "prompt's tasks, weighted by its task labels; per-sample on single-task prompts)",
                          choices=ROUTINGS, group="distillation")
    epochs_per_task: dict = option({}, "alternate routing: task -> epochs per cycle, e.g. "
                                   "{\"text\": 1, \"compose\": 3}",
                                   group="distillation")
    loss_mode: str = option("kl", "kl (analytic KL) | pg (sampled log-ratio advantage) | paper (zero expected grad)",
                            choices=LOSS_MODES, group="distillation")
    weighting: str = option("code", "per-step KL weight: code (released scale) | paper (w(t)) | uniform (velocity MSE)",
                            choices=WEIGHTINGS, group="distillation")
    beta_mar: float = option(0.02, "weight of Manifold Anchor Regularization (0.02 in the paper); 0 turns it off",
                             min=0, group="distillation")
    mar_anchor: str = option("base", "MAR anchor: 'base' (adapters disabled), a teacher's task, or an adapter folder",
                             group="distillation")
    mask_zero_std: bool = option(False, "skip prompt groups whose task rewards are all equal (off for OPD, B 6 A7)",
                                 group="distillation")
    log_rewards: bool = option(True, "score every sample with its task's reward, logged as reward/<task> (costs time)",
                               group="distillation")
    task_rewards: dict = option({}, "task -> the reward that scores it for log_rewards and mask_zero_std (e.g. "
                                "{\"text\": \"ocr\"}; logged as reward/<name>); a task not named is scored by the "
                                "tiny world's reward of its name. The paper preset names the SD3.5 rewards",
                                group="distillation")
    adapter_name: str = option("student", "name of the trained LoRA adapter", group="distillation")

    def check(self) -> None:
        self._check_common()
        if not self.teachers or set(self.teachers) - set(TASKS):
            _fail("teachers", self.teachers, f"map tasks ({', '.join(TASKS)}) to teacher adapter folders")
        _weights("prompt_tasks", self.prompt_tasks, PROMPT_SETS, "task or prompt set")
        if self.routing == "alternate":
            _weights("epochs_per_task", self.epochs_per_task)
            if any(not isinstance(n, int) for n in self.epochs_per_task.values()):
                _fail("epochs_per_task", self.epochs_per_task, 'use whole epochs, e.g. {"text": 1, "compose": 3}')
        tasks = sorted(self.epochs_per_task if self.routing == "alternate" else set(self.prompt_tasks) - {MIXED})
        if self.routing != "alternate" and MIXED in self.prompt_tasks:
            lacking = [t for t in MIXED_TASKS if t not in self.teachers]
            if lacking:
                _fail("teachers", self.teachers, f"the {MIXED!r} prompts touch {', '.join(MIXED_TASKS)}, and "
                      f"{lacking} have no teacher: add teachers[{lacking[0]!r}] or drop {MIXED!r} from prompt_tasks")
        missing = [t for t in tasks if t not in self.teachers]
        if missing:
            _fail("teachers", self.teachers, f"tasks {missing} have no teacher (tasks: {tasks}, teachers: "
                                             f"{sorted(self.teachers)}): add a teacher or drop the task")
        if not self.mar_anchor:
            _fail("mar_anchor", self.mar_anchor, "use 'base', a teacher's task or an adapter folder")
        if self.mask_zero_std and not self.log_rewards:
            _fail("mask_zero_std", self.mask_zero_std, "it needs the task rewards: set log_rewards to true")
        _task_rewards(self.task_rewards)

    @classmethod
    def sd35_medium(cls, **overrides: Any) -> OPDConfig:
        """The released multi-teacher OPD settings (B 2): G 16, lr 1e-4, MAR 0.02 (paper); the paper's reward of
        each task scores it (task_rewards)."""
        return cls._sd35(**{"batch_size": 32, "group_size": 16, "train_batch_size": 4, "lr": 1e-4,
                            "task_rewards": dict(SD35_TASK_REWARDS), **overrides})


# --- presets: quick | default | paper, for any registered config kind (the app's forms, scripts) -------------
PRESET_NAMES = ("quick", "default", "paper")
# ``quick``: a first teacher, cold start and student on a 2-core CPU in minutes. 8 epochs of 64 images (the
# reproduction's teacher budget, docs/results-tiny-grpo-teachers.md). Measured on the built-in tiny model on
# the 2-core test machine, the whole pipeline as the app's Distill tab queues it (real workers, default torch
# threads, nothing else training): teachers 99-123 s each, the merge 5 s, the distillation 168 s; 10.1 min
# from submit to the student. Under load (1 thread, another process training) speeds halve: GRPO 2.4 and OPD
# 2.0 images/s.
QUICK_FIELDS: dict[str, dict[str, Any]] = {
    "grpo": dict(epochs=8, batch_size=64, group_size=4, train_batch_size=8, optimizer_steps_per_epoch=2, lr=1e-3,
                 checkpoint_every=2, sample_every=2),
    "opd": dict(epochs=8, batch_size=64, group_size=4, train_batch_size=8, optimizer_steps_per_epoch=2, lr=1e-4,
                checkpoint_every=2, sample_every=2),
    "coldstart": dict(sft_steps=50, sft_batch_size=16, sft_samples_per_task=32),
    "sft": dict(steps=150, batch_size=16, checkpoint_every=50, sample_every=50),
    # NFT (flowopd.nft_config): the teachers' size; NFT's ODE rollouts cost less per image than GRPO's SDE.
    "nft": dict(epochs=8, batch_size=64, group_size=4, train_batch_size=8, optimizer_steps_per_epoch=2, lr=1e-3,
                checkpoint_every=2, sample_every=2),
    # AWM (flowopd.awm_config): NFT's size (the same ODE rollouts and forward-process training).
    "awm": dict(epochs=8, batch_size=64, group_size=4, train_batch_size=8, optimizer_steps_per_epoch=2, lr=1e-3,
                checkpoint_every=2, sample_every=2),
}


def preset(kind: str, name: str = "default", **overrides: Any) -> ConfigBase:
    """The ``kind`` config (``grpo``, ``opd``, ``coldstart``, or any registered kind) of preset ``name``.

    ``quick``: minutes on a 2-core CPU (:data:`QUICK_FIELDS`; a kind without an entry gets its defaults);
    ``default``: the config's defaults (the tiny world's tuned values); ``paper``: the class's ``sd35_medium()``
    (the paper's SD3.5 Medium settings). ``overrides`` (any field) apply last.

    Example:
        >>> preset("grpo", "quick").epochs
        8
    """
    from .config_base import config_class

    cls = config_class(kind)
    if name not in PRESET_NAMES:
        raise ValueError(f"preset {name!r} is unknown: use one of {', '.join(PRESET_NAMES)}")
    if name == "paper":
        if not hasattr(cls, "sd35_medium"):
            raise ValueError(f"the {kind} config has no paper preset: use quick or default")
        return cls.sd35_medium(**overrides)
    values = dict(QUICK_FIELDS.get(kind, {})) if name == "quick" else {}
    return cls(**{**values, **overrides})
