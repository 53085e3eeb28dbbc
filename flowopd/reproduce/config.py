"""The benchmark's size: :class:`StageBudget` per training stage and :class:`ReproduceConfig`, with presets.

Two presets (``ReproduceConfig.preset(name)``):

* ``default``: the tiny reproduction on the built-in 3.6 M-parameter model (epochs of 64 images = 16
  prompts x groups of 4, 2 optimizer steps per epoch, LoRA lr 1e-3 for GRPO and 1e-4 for distillation,
  whose first Adam steps at 1e-3 move the student farther from its teacher than the merge left it
  (``docs/opd-tuning.md``); 8 epochs per teacher, 16 for
  distillation and GRPO-Mix; the full evaluation protocol). The shape was picked by the measurements in
  ``docs/grpo-tuning.md``: more prompts per step beat more steps, lr 3e-3 and 1e-2 make the text teacher
  worse. Distillation gets twice a teacher's steps because it serves four tasks at once: from one teacher
  16 steps recover 85-92 % of its gain, from four they recovered 29-68 % (``docs/results-tiny.md``);
* ``smoke``: seconds on a small random model, for tests (1 epoch of 4 images, 2 SDE steps, 2 test prompts
  per task).

Fields of the stage configs that the budget does not set can be overridden through ``rl`` (every GRPO and
OPD stage), ``grpo``, ``opd`` and ``coldstart``, e.g. ``{"rl": {"lr": 5e-4}, "coldstart": {"sft_steps": 50}}``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

BUDGETS = ("smoke", "default")
# Fields added after benchmark folders were written, with the value those folders ran with: a stored
# config.json without the field is compared with this value (so an old folder continues as it ran).
LEGACY_VALUES: dict[str, Any] = {"eval_merged": False}
# Set by the plan for every stage; an override of these would break the comparison, so it is refused.
RESERVED = ("seed", "model", "epochs", "batch_size", "group_size", "train_batch_size", "optimizer_steps_per_epoch",
            "rewards", "prompt_tasks", "teachers", "init", "beta_mar", "mode", "adapter_name", "sample_every")


@dataclass(frozen=True)
class StageBudget:
    """The size of one on-policy training stage (GRPO or OPD).

    One epoch samples ``batch_size`` images (``batch_size / group_size`` prompts) and takes
    ``optimizer_steps_per_epoch`` optimizer steps over micro-batches of ``train_batch_size``.
    """

    epochs: int
    batch_size: int = 32
    group_size: int = 8
    train_batch_size: int = 8
    optimizer_steps_per_epoch: int = 2

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "group_size", "train_batch_size", "optimizer_steps_per_epoch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"budget {name}={value!r} is invalid: use a positive integer")

    @property
    def optimizer_steps(self) -> int:
        return self.epochs * self.optimizer_steps_per_epoch

    @property
    def images(self) -> int:
        """Images sampled over the whole stage."""
        return self.epochs * self.batch_size

    def with_steps(self, steps: int) -> StageBudget:
        """The same batch shape with enough epochs for at least ``steps`` optimizer steps.

        Example:
            >>> StageBudget(8).with_steps(40).epochs
            20
        """
        return replace(self, epochs=max(1, math.ceil(steps / self.optimizer_steps_per_epoch)))

    def fields(self) -> dict[str, int]:
        """The budget as config fields of a GRPO or OPD stage."""
        return asdict(self)


def _dict_field(help_text: str) -> Any:
    return field(default_factory=dict, metadata={"help": help_text})


@dataclass
class ReproduceConfig:
    """The whole benchmark: model, seeds, stage budgets, evaluation and per-stage overrides."""

    budget: str = field(default="default", metadata={"help": "preset these values came from: smoke | default"})
    model: str | None = field(default=None, metadata={"help": "base model folder; None = the built-in tiny model"})
    seeds: int = field(default=1, metadata={"help": "training seeds 0..seeds-1; rows report mean and std"})
    teacher: StageBudget = field(default_factory=lambda: StageBudget(8, batch_size=64, group_size=4), metadata={
        "help": "budget of each GRPO teacher (and of each seesaw run)"})
    distill: StageBudget = field(default_factory=lambda: StageBudget(16, batch_size=64, group_size=4), metadata={
        "help": "budget of each OPD run; grpo-mix gets the same; grpo-mix-long the same shape with the steps "
                "of the 4 teachers + cold start + distillation"})
    num_steps: int = field(default=10, metadata={"help": "SDE steps per training rollout"})
    eval_steps: int = field(default=20, metadata={"help": "ODE steps of the evaluation protocol"})
    eval_limit: int | None = field(default=None, metadata={
        "help": "evaluate on the first N test prompts per task (compose: spread over its categories); "
                "None = the whole test split (the protocol)"})
    eval_batch_size: int = field(default=64, metadata={"help": "images per evaluation batch"})
    eval_merged: bool = field(default=False, metadata={
        "help": "evaluate each adapter folded into the base weights (same images up to float rounding, ~25 % "
                "faster on the tiny model); the presets set true, false = through the LoRA layers (runs before "
                "2026-12-02)"})
    beta_mar: float = field(default=0.02, metadata={"help": "MAR weight of the opd and opd-sft rows"})
    checkpoint_every: int = field(default=4, metadata={"help": "epochs between resumable trainer checkpoints"})
    rl: dict = _dict_field("extra fields of every GRPOConfig and OPDConfig (e.g. lr, noise_level, ema)")
    grpo: dict = _dict_field("extra GRPOConfig fields (e.g. beta)")
    opd: dict = _dict_field("extra OPDConfig fields (e.g. loss_mode, weighting)")
    coldstart: dict = _dict_field("extra ColdStartConfig fields (e.g. sft_steps, sft_samples_per_task)")

    def __post_init__(self) -> None:
        if isinstance(self.teacher, dict):
            self.teacher = StageBudget(**self.teacher)
        if isinstance(self.distill, dict):
            self.distill = StageBudget(**self.distill)
        if self.budget not in BUDGETS:
            raise ValueError(f"budget={self.budget!r} is invalid: use one of {', '.join(BUDGETS)}")
        for name in ("seeds", "num_steps", "eval_steps", "eval_batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: use a positive integer")
        if self.eval_limit is not None and (not isinstance(self.eval_limit, int) or self.eval_limit < 1):
            raise ValueError(f"eval_limit={self.eval_limit!r} is invalid: use a positive integer or null")
        if not isinstance(self.eval_merged, bool):
            raise ValueError(f"eval_merged={self.eval_merged!r} is invalid: use true or false")
        if not isinstance(self.beta_mar, (int, float)) or not self.beta_mar > 0:
            raise ValueError(f"beta_mar={self.beta_mar!r} is invalid: use a weight > 0 (opd-no-mar is the 0 row)")
        for name in ("rl", "grpo", "opd", "coldstart"):
            extra = getattr(self, name)
            if not isinstance(extra, dict):
                raise ValueError(f"{name}={extra!r} is invalid: use a JSON object of config fields")
            taken = sorted(set(extra) & set(RESERVED))
            if taken:
                raise ValueError(f"{name} sets {taken}, which the benchmark sets itself: change the budgets "
                                 f"(teacher, distill) or beta_mar instead")

    @classmethod
    def preset(cls, name: str = "default", **overrides: Any) -> ReproduceConfig:
        """The ``smoke`` or ``default`` preset with ``overrides`` (any field) applied."""
        if name not in BUDGETS:
            raise ValueError(f"budget {name!r} is unknown: use one of {', '.join(BUDGETS)}")
        base: dict[str, Any] = {"budget": name, "eval_merged": True}
        if name == "default":
            base["coldstart"] = {"sft_steps": 100, "sft_batch_size": 32, "sft_samples_per_task": 64}
            base["rl"] = {"lr": 1e-3}
            base["opd"] = {"lr": 1e-4}  # from the merge init, 1e-3 throws the student off (docs/opd-tuning.md)
        else:
            tiny = StageBudget(epochs=1, batch_size=4, group_size=2, train_batch_size=4, optimizer_steps_per_epoch=1)
            base.update(teacher=tiny, distill=tiny, num_steps=2, eval_steps=2, eval_limit=2, eval_batch_size=16,
                        checkpoint_every=1, rl={"ema": False, "lora_rank": 2, "lora_alpha": 4.0},
                        coldstart={"sft_steps": 2, "sft_batch_size": 4, "sft_samples_per_task": 2, "eval_steps": 2,
                                   "lora_rank": 2, "lora_alpha": 4.0})
        for key in ("rl", "grpo", "opd", "coldstart"):  # merge the dicts rather than replace them
            if key in overrides:
                overrides[key] = {**base.get(key, {}), **overrides[key]}
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ReproduceConfig:
        """From a dict of fields; a ``budget`` key picks the preset the other keys override."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown reproduce config keys {unknown}: known keys are {sorted(known)}")
        data = dict(data)
        return cls.preset(data.pop("budget", "default"), **data)

    @classmethod
    def from_json(cls, path: str | Path) -> ReproduceConfig:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}): write an object of reproduce config fields") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object of reproduce config fields")
        return cls.from_dict(data)
