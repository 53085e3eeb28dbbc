"""Configs of the three stages (GRPO teachers, cold start, distillation): tiny-world defaults, ``sd35_medium()``
for SD3.5 Medium (algorithm.md B 2), ``metadata["help"]`` on every field (UI forms), validation naming the field
and the fix, and a ``to_json``/``from_json`` round-trip (a run's snapshot)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from .dataclass_util import build_strict
from .world.prompts import TASKS

SD35_MEDIUM = "stabilityai/stable-diffusion-3.5-medium"
# These three mirror flowopd.opd (a test checks it); not imported, so configs load without torch.
LOSS_MODES, WEIGHTINGS, ROUTINGS = ("kl", "pg", "paper"), ("code", "paper", "uniform"), ("per-sample", "alternate")
COLDSTART_MODES = ("merge", "merge-avg", "sft", "none")
MERGE_COMBINATIONS = ("cat", "svd")
PRECISIONS = ("no", "fp16", "bf16")
LR_SCHEDULES = ("constant", "cosine", "linear")


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a help text; mutable defaults are copied per instance."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: json.loads(json.dumps(default)), metadata={"help": help})
    return field(default=default, metadata={"help": help})


def _fail(name: str, value: Any, fix: str) -> None:
    raise ValueError(f"{name}={value!r} is invalid: {fix}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(name, value, f"use one of {', '.join(choices)}")


def _positive(obj: Any, *names: str, integer: bool = True) -> None:
    for name in names:
        value = getattr(obj, name)
        ok = isinstance(value, int) and not isinstance(value, bool) if integer else isinstance(value, (int, float))
        if not ok or not value > 0 or (not integer and not math.isfinite(value)):
            _fail(name, value, f"use a positive {'integer' if integer else 'number'}")


def _weights(name: str, value: Any, allowed: tuple[str, ...] | None = TASKS) -> None:
    if not isinstance(value, dict) or not value:
        _fail(name, value, 'use a non-empty mapping such as {"compose": 1.0}')
    for key, w in value.items():
        if allowed is not None and key not in allowed:
            _fail(name, value, f"{key!r} is not a task; use names from {', '.join(allowed)}")
        if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0 or not math.isfinite(w):
            _fail(name, value, f"the weight of {key!r} must be a finite number >= 0")
    if sum(value.values()) <= 0:
        _fail(name, value, "give at least one entry a positive weight")


class _JsonConfig:
    """JSON round-trip shared by the configs: ``{"kind": ..., field: value, ...}``."""

    kind: ClassVar[str]

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: dict) -> Any:
        data = dict(data)
        kind = data.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ValueError(f"this is a {kind!r} config, not a {cls.kind!r} one: pass it to the {kind} command")
        return build_strict(cls, data, cls.kind)

    @classmethod
    def from_json(cls, source: str | Path) -> Any:
        """From a JSON string or the path of a JSON file."""
        text = str(source) if str(source).lstrip().startswith("{") else Path(source).read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"config is not valid JSON ({err}): fix the file or write it with to_json") from None
        if not isinstance(data, dict):
            raise ValueError("config JSON must be an object of field: value")
        return cls.from_dict(data)

    @classmethod
    def help(cls) -> dict[str, str]:  # field name -> help text, for forms and --help
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


@dataclass
class _RLConfig(_JsonConfig):
    """Fields shared by the two on-policy stages (GRPO and OPD): rollouts, batches, optimiser, LoRA, EMA."""

    # model and rollouts
    model: str | None = _f(None, "base model: tiny checkpoint folder, SD3 pipeline folder, Hub id; None = built-in")
    seed: int = _f(0, "random seed of prompts, noise and initialisation")
    num_steps: int = _f(10, "SDE steps per training rollout (the paper's T = 10)")
    eval_steps: int = _f(20, "ODE steps when evaluating (40 for SD3.5)")
    guidance: float = _f(3.0, "classifier-free guidance scale, used in rollouts, training and evaluation")
    noise_level: float = _f(0.7, "SDE noise level a: std_dev_t = a sqrt(t / (1 - t)) (0.7 in the paper)")
    timestep_fraction: float = _f(0.8, "fraction of rollout steps trained (tiny world: the first 8 of 10; Flow-GRPO's "
                                       "0.99 trains 9, which the SD3.5 presets keep)")
    steps_per_microbatch: int = _f(0, "train each micro-batch on this many of the trained steps, drawn at random "
                                      "per micro-batch and epoch (an unbiased estimate of the mean over all of "
                                      "them); 0 = every trained step (Flow-GRPO). Fewer backward passes per image "
                                      "let more prompts fit the same compute")
    sde_window: int = _f(0, "draw SDE noise on a window of this many consecutive trained steps only, run every "
                            "other step as an ODE step, and train the window alone (Flow-GRPO-Fast, MixGRPO): a "
                            "group's rewards then differ only by noise its trained log-probs are credited with, and "
                            "an image costs a backward pass per window step, not per trained step. The window's "
                            "start is drawn per epoch from the run's seed among the trained steps; 0 = every "
                            "trained step draws noise and trains (Flow-GRPO)")
    clean_untrained_steps: bool = _f(True, "run the untrained last rollout steps as ODE steps so rewards see clean "
                                           "images (tiny world: SDE noise left by step 9 of 10 in pixel space drops "
                                           "the quality reward of rollouts to 0.005, docs/grpo-tuning.md); False = "
                                           "Flow-GRPO's all-SDE rollouts")
    shared_group_noise: bool = _f(False, "give every image of a prompt group the same initial noise, so the "
                                         "group's rewards differ only by the SDE noise the log-probs are "
                                         "credited with (DanceGRPO); False = Flow-GRPO's independent noise")
    antithetic_noise: bool = _f(False, "give images 2k and 2k + 1 of a group opposite SDE noise (z and -z) at every "
                                       "step, so their reward difference keeps the part of the reward that is odd "
                                       "in the noise, which the policy gradient estimates; needs an even "
                                       "group_size and train_batch_size; False = independent noise")
    # batches
    epochs: int = _f(40, "sample-then-train rounds")
    batch_size: int = _f(64, "images sampled per epoch and process")
    group_size: int = _f(4, "images per prompt (one GRPO group); must divide batch_size (tiny world: 16 prompts "
                            "x 4 beat 4 x 8, docs/grpo-tuning.md)")
    train_batch_size: int = _f(8, "images per forward/backward micro-batch; must divide batch_size")
    optimizer_steps_per_epoch: int = _f(2, "optimizer steps per epoch, accumulating over the rest (2 in the code)")
    # optimiser
    lr: float = _f(1e-3, "AdamW learning rate of the LoRA (tiny world, measured; SD3.5 presets set their own)")
    weight_decay: float = _f(1e-4, "AdamW weight decay")
    adam_betas: list = _f([0.9, 0.999], "AdamW betas")
    adam_eps: float = _f(1e-8, "AdamW epsilon")
    max_grad_norm: float = _f(1.0, "gradient-norm clip")
    clip_range: float = _f(1e-4, "PPO ratio clip epsilon (log-probs are per-dimension means, hence tiny)")
    adv_clip: float = _f(5.0, "advantages are clipped to +-adv_clip")
    # LoRA, EMA, precision, bookkeeping
    lora_rank: int = _f(8, "LoRA rank r of a new adapter (32 for SD3.5)")
    lora_alpha: float = _f(16.0, "LoRA alpha of a new adapter; the update is (alpha / r) B A (64 for SD3.5)")
    ema: bool = _f(True, "keep an EMA of the LoRA weights and evaluate it")
    ema_decay: float = _f(0.9, "EMA decay (warmed up as min((1 + k) / (10 + k), decay))")
    ema_every: int = _f(8, "update the EMA every this many optimizer steps")
    mixed_precision: str = _f("no", "no | fp16 | bf16 for the frozen base (LoRA weights stay fp32)")
    checkpoint_every: int = _f(10, "save a resumable checkpoint every this many epochs")
    eval_every: int = _f(10, "evaluate every this many epochs")
    warmup_steps: int = _f(0, "linear learning-rate warm-up over this many optimizer steps (code: 0)")
    lr_schedule: str = _f("constant", "learning rate after the warm-up: constant (Flow-GRPO's code) | cosine | "
                                      "linear; cosine and linear decay from lr towards 0, reached one step after the "
                                      "last optimizer step (epochs x optimizer_steps_per_epoch)")
    sample_every: int = _f(10, "send ODE samples of fixed test prompts to the callback every N epochs; 0 = never")

    def _check_common(self) -> None:
        _positive(self, "num_steps", "eval_steps", "epochs", "batch_size", "group_size", "train_batch_size",
                  "optimizer_steps_per_epoch", "lora_rank", "ema_every", "checkpoint_every", "eval_every")
        _positive(self, "lr", "lora_alpha", "clip_range", "adv_clip", "max_grad_norm", "adam_eps", integer=False)
        if self.num_steps > 1000 or self.eval_steps > 1000:
            _fail("num_steps", self.num_steps, "use at most 1000 steps (and eval_steps too)")
        if not isinstance(self.guidance, (int, float)) or self.guidance < 0:
            _fail("guidance", self.guidance, "use a scale >= 0 (1.0 disables guidance)")
        if not 0 < self.noise_level <= 2:
            _fail("noise_level", self.noise_level, "use a value in (0, 2]; on-policy training needs an SDE (0.7)")
        if not 0 < self.timestep_fraction <= 1 or int(self.num_steps * self.timestep_fraction) < 1:
            _fail("timestep_fraction", self.timestep_fraction, "use a fraction in (0, 1] that trains >= 1 step")
        if self.batch_size % self.group_size:
            _fail("group_size", self.group_size, f"it must divide batch_size={self.batch_size} (whole groups)")
        if self.batch_size % self.train_batch_size:
            _fail("train_batch_size", self.train_batch_size, f"it must divide batch_size={self.batch_size}")
        micro = self.batch_size // self.train_batch_size
        if micro % self.optimizer_steps_per_epoch:
            _fail("optimizer_steps_per_epoch", self.optimizer_steps_per_epoch,
                  f"it must divide the {micro} micro-batches per epoch (batch_size / train_batch_size)")
        if (not isinstance(self.steps_per_microbatch, int) or isinstance(self.steps_per_microbatch, bool)
                or not 0 <= self.steps_per_microbatch <= self.trained_steps):
            _fail("steps_per_microbatch", self.steps_per_microbatch,
                  f"use 0 (all) or a whole number up to the {self.trained_steps} trained steps "
                  "(num_steps x timestep_fraction)")
        if (not isinstance(self.sde_window, int) or isinstance(self.sde_window, bool)
                or not 0 <= self.sde_window <= self.trained_steps):
            _fail("sde_window", self.sde_window,
                  f"use 0 (off) or a whole number of steps up to the {self.trained_steps} trained steps "
                  "(num_steps x timestep_fraction)")
        if self.sde_window and self.steps_per_microbatch > self.sde_window:
            _fail("steps_per_microbatch", self.steps_per_microbatch,
                  f"use at most sde_window={self.sde_window}: only the window's steps train")
        if not isinstance(self.shared_group_noise, bool):
            _fail("shared_group_noise", self.shared_group_noise, "use true or false")
        if not isinstance(self.antithetic_noise, bool):
            _fail("antithetic_noise", self.antithetic_noise, "use true or false")
        if self.antithetic_noise and (self.group_size % 2 or self.train_batch_size % 2):
            _fail("antithetic_noise", self.antithetic_noise,
                  f"it pairs images: use an even group_size and train_batch_size (got {self.group_size} and "
                  f"{self.train_batch_size}), or false")
        for name in ("warmup_steps", "sample_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                _fail(name, value, "use a whole number >= 0")
        if not self.weight_decay >= 0:
            _fail("weight_decay", self.weight_decay, "use a value >= 0")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            _fail("adam_betas", self.adam_betas, "use two numbers in [0, 1), e.g. [0.9, 0.999]")
        if not 0 < self.ema_decay < 1:
            _fail("ema_decay", self.ema_decay, "use a decay in (0, 1), e.g. 0.9")
        _choice("mixed_precision", self.mixed_precision, PRECISIONS)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)

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
class GRPOConfig(_RLConfig):
    """Stage 1: a Flow-GRPO teacher on one reward, or on several with weights (the GRPO-Mix baseline)."""

    kind: ClassVar[str] = "grpo"
    rewards: dict = _f({"compose": 1.0}, "reward name -> weight; several rewards at once is GRPO-Mix")
    prompt_tasks: dict = _f({"compose": 1.0}, "task -> sampling weight of its train prompts")
    beta: float = _f(0.04, "weight of the KL to the base model (adapters disabled); 0 turns it off")
    global_std: bool = _f(True, "normalise advantages by the std of all rewards (Flow-GRPO), else per group")
    mask_zero_std: bool = _f(True, "skip groups whose rewards are all equal (no learning signal)")
    adapter_name: str = _f("teacher", "name of the trained LoRA adapter")

    def __post_init__(self) -> None:
        self._check_common()
        _weights("rewards", self.rewards, allowed=None)
        _weights("prompt_tasks", self.prompt_tasks)
        if not self.beta >= 0:
            _fail("beta", self.beta, "use a KL weight >= 0 (0.04 in Flow-GRPO)")
        if self.group_size < 2:
            _fail("group_size", self.group_size, "GRPO needs >= 2 images per prompt for a group baseline")

    @classmethod
    def sd35_medium(cls, **overrides: Any) -> GRPOConfig:
        """Flow-GRPO's SD3.5-M teacher settings (B 2): G 24, lr 3e-4, beta 0.04."""
        return cls._sd35(**{"batch_size": 48, "group_size": 24, "train_batch_size": 8, "lr": 3e-4, **overrides})


@dataclass
class ColdStartConfig(_JsonConfig):
    """The student's initial LoRA: merged teachers, their element-wise average, SFT on teacher samples, or none."""

    kind: ClassVar[str] = "coldstart"
    mode: str = _f("merge", "merge (exact delta merge) | merge-avg (code's A/B average) | sft | none (fresh LoRA)")
    teachers: dict = _f({}, "task -> teacher adapter folder")
    weights: dict = _f({}, "task -> merge weight; empty = equal weights summing to 1")
    combination: str = _f("cat", "merge mode: cat (exact, rank = sum of ranks) | svd (truncated to svd_rank)")
    svd_rank: int | None = _f(None, "rank of an svd merge; None = the largest teacher rank")
    model: str | None = _f(None, "base model (as in the GRPO config); None = the built-in tiny model")
    seed: int = _f(0, "random seed")
    lora_rank: int = _f(8, "rank of the SFT / none student LoRA")
    lora_alpha: float = _f(16.0, "alpha of the SFT / none student LoRA")
    sft_steps: int = _f(200, "SFT optimizer steps")
    sft_batch_size: int = _f(32, "SFT images per step")
    sft_lr: float = _f(1e-4, "SFT learning rate")
    sft_samples_per_task: int = _f(256, "teacher samples drawn per task for SFT (ODE, eval_steps, guidance)")
    sft_best_of: int = _f(1, "keep the best of this many samples per prompt by the task reward (1 = keep all)")
    sft_beta_base: float = _f(0.0, "weight of an MSE to the base model's velocity during SFT")
    eval_steps: int = _f(20, "ODE steps of the teacher samples (40 for SD3.5)")
    guidance: float = _f(3.0, "CFG scale of the teacher samples")

    def __post_init__(self) -> None:
        _choice("mode", self.mode, COLDSTART_MODES)
        _choice("combination", self.combination, MERGE_COMBINATIONS)
        if self.mode != "none" and not self.teachers:
            _fail("teachers", self.teachers, f"mode {self.mode!r} needs teachers (task -> folder), or use mode 'none'")
        bad = sorted(set(self.teachers) - set(TASKS))
        if bad:
            _fail("teachers", self.teachers, f"{bad} are not tasks; use names from {', '.join(TASKS)}")
        if self.weights:
            _weights("weights", self.weights)
            if set(self.weights) != set(self.teachers):
                _fail("weights", self.weights, f"give one weight per teacher task {sorted(self.teachers)}, or none")
        _positive(self, "lora_rank", "sft_steps", "sft_batch_size", "sft_samples_per_task", "sft_best_of",
                  "eval_steps", *(["svd_rank"] if self.svd_rank is not None else []))
        _positive(self, "lora_alpha", "sft_lr", integer=False)
        if not self.sft_beta_base >= 0:
            _fail("sft_beta_base", self.sft_beta_base, "use a weight >= 0")

    def merge_weights(self) -> dict[str, float]:
        """Task -> weight, equal weights summing to 1 when none are given."""
        return dict(self.weights) if self.weights else {t: 1 / len(self.teachers) for t in self.teachers}

    @classmethod
    def sd35_medium(cls, **overrides: Any) -> ColdStartConfig:
        """SD3.5-M: r 32 / alpha 64, 40-step teacher samples at CFG 4.5, SFT lr 1e-4 (B 6 A9)."""
        return cls(**{"model": SD35_MEDIUM, "lora_rank": 32, "lora_alpha": 64.0, "eval_steps": 40, "guidance": 4.5,
                      "sft_steps": 1000, "sft_batch_size": 24, **overrides})


@dataclass
class OPDConfig(_RLConfig):
    """Stage 2: on-policy distillation of the routed teachers into the student, with MAR."""

    kind: ClassVar[str] = "opd"
    teachers: dict = _f({}, "task -> teacher adapter folder; every prompt task needs one")
    init: str | None = _f(None, "student's initial adapter folder (a cold start); None = a fresh LoRA")
    prompt_tasks: dict = _f({"compose": 1.0, "text": 1.0, "prefer": 1.0},
                            "task -> sampling weight of its train prompts (per-sample routing)")
    routing: str = _f("per-sample", "per-sample (each prompt to its task's teacher) | alternate (a task per epoch)")
    epochs_per_task: dict = _f({}, "alternate routing: task -> epochs per cycle, e.g. {\"text\": 1, \"compose\": 3}")
    loss_mode: str = _f("kl", "kl (analytic KL) | pg (sampled log-ratio advantage) | paper (zero expected grad)")
    weighting: str = _f("code", "per-step KL weight: code (released scale) | paper (w(t)) | uniform (velocity MSE)")
    beta_mar: float = _f(0.02, "weight of Manifold Anchor Regularization (0.02 in the paper); 0 turns it off")
    mar_anchor: str = _f("base", "MAR anchor: 'base' (adapters disabled), a teacher's task, or an adapter folder")
    mask_zero_std: bool = _f(False, "skip prompt groups whose task rewards are all equal (off for OPD, B 6 A7)")
    log_rewards: bool = _f(True, "score every sample with its task's reward, logged as reward/<task> (costs time)")
    adapter_name: str = _f("student", "name of the trained LoRA adapter")

    def __post_init__(self) -> None:
        self._check_common()
        _choice("loss_mode", self.loss_mode, LOSS_MODES)
        _choice("weighting", self.weighting, WEIGHTINGS)
        _choice("routing", self.routing, ROUTINGS)
        if not self.teachers or set(self.teachers) - set(TASKS):
            _fail("teachers", self.teachers, f"map tasks ({', '.join(TASKS)}) to teacher adapter folders")
        _weights("prompt_tasks", self.prompt_tasks)
        if self.routing == "alternate":
            _weights("epochs_per_task", self.epochs_per_task)
            if any(not isinstance(n, int) for n in self.epochs_per_task.values()):
                _fail("epochs_per_task", self.epochs_per_task, 'use whole epochs, e.g. {"text": 1, "compose": 3}')
        tasks = sorted(self.epochs_per_task if self.routing == "alternate" else self.prompt_tasks)
        missing = [t for t in tasks if t not in self.teachers]
        if missing:
            _fail("teachers", self.teachers, f"tasks {missing} have no teacher (tasks: {tasks}, teachers: "
                                             f"{sorted(self.teachers)}): add a teacher or drop the task")
        if not self.beta_mar >= 0:
            _fail("beta_mar", self.beta_mar, "use a weight >= 0 (0.02 in the paper)")
        if not self.mar_anchor:
            _fail("mar_anchor", self.mar_anchor, "use 'base', a teacher's task or an adapter folder")
        if self.mask_zero_std and not self.log_rewards:
            _fail("mask_zero_std", self.mask_zero_std, "it needs the task rewards: set log_rewards to true")

    @classmethod
    def sd35_medium(cls, **overrides: Any) -> OPDConfig:
        """The released multi-teacher OPD settings (B 2): G 16, lr 1e-4, MAR 0.02 (paper)."""
        return cls._sd35(**{"batch_size": 32, "group_size": 16, "train_batch_size": 4, "lr": 1e-4, **overrides})
