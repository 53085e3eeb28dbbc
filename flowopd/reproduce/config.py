"""The benchmark's size: :class:`StageBudget` per training stage and :class:`ReproduceConfig`, with presets.

Two presets (``ReproduceConfig.preset(name)``):

* ``default``: the tiny reproduction on the built-in 3.6 M-parameter model (epochs of 64 images = 16
  prompts x groups of 4, 2 optimizer steps per epoch, LoRA lr 1e-3 for GRPO and 1e-4 for distillation,
  whose first Adam steps at 1e-3 move the student farther from its teacher than the merge left it
  (``docs/notes/opd-tuning.md``); 8 epochs per teacher, 16 for
  distillation and GRPO-Mix; the full evaluation protocol). The shape was picked by the measurements in
  ``docs/notes/grpo-tuning.md``: more prompts per step beat more steps, lr 3e-3 and 1e-2 make the text teacher
  worse. Distillation gets twice a teacher's steps because it serves four tasks at once: from one teacher
  16 steps recover 85-92 % of its gain, from four they recovered 29-68 % (``docs/results-tiny-grpo-teachers.md``);
* ``smoke``: seconds on a small random model, for tests (1 epoch of 4 images, 2 SDE steps, 2 test prompts
  per task).

Fields of the stage configs that the budget does not set can be overridden through ``rl`` (every GRPO and
OPD stage), ``grpo``, ``opd`` and ``coldstart``, e.g. ``{"rl": {"lr": 5e-4}, "coldstart": {"sft_steps": 50}}``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..config.base import ConfigBase, option
from ..config.choices import EMA_WARMUPS
from ..config.presets import STRONGEST_MERGE_WEIGHTS, STRONGEST_SOURCES
from ..world.prompts import TASKS

BUDGETS = ("smoke", "default", "strong")
TEACHER_SOURCES = ("grpo", "nft", "awm", "sft")
JOINT_SOURCES = ("auto", "nft", "awm", "none")
# Fields added after benchmark folders were written, with the value those folders ran with: a stored
# config.json without the field is compared with this value (so an old folder continues as it ran).
LEGACY_VALUES: dict[str, Any] = {"eval_merged": False, "kind": "reproduce", "ema_warmup": "legacy", "teachers": {},
                                 "joint": "auto", "sft_images": 512, "nft": {}, "awm": {}, "sft": {},
                                 "seesaw": True, "grpo_mix_long": True, "joint_long": True, "sft_prior": 0}
# Set by the plan for every stage; an override of these would break the comparison, so it is refused.
RESERVED = ("seed", "model", "epochs", "batch_size", "group_size", "train_batch_size", "optimizer_steps_per_epoch",
            "rewards", "prompt_tasks", "teachers", "init", "beta_mar", "mode", "adapter_name", "sample_every",
            "data", "sft_data")
SFT_RESERVED = ("seed", "model", "data", "sample_every", "reg_data")  # an sft teacher's run length is its own (steps)


@dataclass(frozen=True)
class StageBudget(ConfigBase):
    """The size of one on-policy training stage (GRPO or OPD).

    One epoch samples ``batch_size`` images (``batch_size / group_size`` prompts) and takes
    ``optimizer_steps_per_epoch`` optimizer steps over micro-batches of ``train_batch_size``.
    """

    kind = "budget"  # not registered: a part of ReproduceConfig
    epochs: int = option(8, "sample-then-train rounds", min=1)
    batch_size: int = option(32, "images sampled per epoch", min=1)
    group_size: int = option(8, "images per prompt (one group)", min=1)
    train_batch_size: int = option(8, "images per forward/backward micro-batch", min=1)
    optimizer_steps_per_epoch: int = option(2, "optimizer steps per epoch", min=1)

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


@dataclass
class ReproduceConfig(ConfigBase, kind="reproduce"):
    """The whole benchmark: model, seeds, stage budgets, evaluation and per-stage overrides."""

    budget: str = option("default", "preset these values came from: smoke | default | strong", choices=BUDGETS,
                         group="benchmark")
    model: str | None = option(None, "base model folder; None = the built-in tiny model", group="benchmark")
    seeds: int = option(1, "training seeds 0..seeds-1; rows report mean and std", min=1, group="benchmark")
    teacher: StageBudget = option(StageBudget(8, batch_size=64, group_size=4),
                                  "budget of each GRPO teacher (and of each seesaw run)", group="budgets")
    distill: StageBudget = option(StageBudget(16, batch_size=64, group_size=4),
                                  "budget of each OPD run; grpo-mix gets the same; grpo-mix-long the same shape with "
                                  "the steps of the 4 teachers + cold start + distillation", group="budgets")
    num_steps: int = option(10, "SDE steps per training rollout", min=1, group="budgets")
    eval_steps: int = option(20, "ODE steps of the evaluation protocol", min=1, group="evaluation")
    eval_limit: int | None = option(None, "evaluate on the first N test prompts per task (compose: spread over its "
                                          "categories); None = the whole test split (the protocol)", min=1,
                                    group="evaluation")
    eval_batch_size: int = option(64, "images per evaluation batch", min=1, group="evaluation")
    eval_guidance: float | None = option(3.0, "CFG of every row's evaluation: one scale, so that rows compare (a "
                                         "CFG-free teacher at 1.0 against the base at 3.0 mixes guidance with "
                                         "training); None = each adapter at its own", min=0, group="evaluation")
    eval_merged: bool = option(False, "evaluate each adapter folded into the base weights (same images up to float "
                                      "rounding, ~25 % faster on the tiny model); the presets set true, false = "
                                      "through the LoRA layers (the first published runs)", group="evaluation")
    ema_warmup: str = option("mean", "EMA warm-up of every GRPO and OPD stage: mean (no initial weight left behind) | "
                             "legacy (the first published runs)", choices=EMA_WARMUPS,
                             group="budgets")
    beta_mar: float = option(0.02, "MAR weight of the opd and opd-sft rows (opd-no-mar is the 0 row)", min=0,
                             min_open=True, group="budgets")
    checkpoint_every: int = option(4, "epochs between resumable trainer checkpoints", min=1, group="budgets")
    teachers: dict = option({}, "task -> teacher source: grpo | nft | awm | sft (a supervised LoRA on the world's "
                            "renders of the task); a task not named gets grpo, the paper's", group="teachers")
    joint: str = option("auto", "algorithm of the joint <source>-mix rows (one adapter on every teacher's objective "
                        "at once): auto = the teachers' forward-process source (nft or awm; none when all are "
                        "grpo) | nft | awm | none", choices=JOINT_SOURCES, group="teachers")
    sft_images: int = option(512, "renders per image set of an sft teacher (written once to OUT/data/<task>)", min=1,
                             group="teachers")
    seesaw: bool = option(True, "run the seesaw rows (4 GRPO runs, the rewards stacked one by one); the strong preset "
                          "leaves them out: they do not depend on the teachers' source and take a third of its time",
                          group="budgets")
    grpo_mix_long: bool = option(True, "run grpo-mix-long (GRPO-Mix at the whole pipeline's compute); the strong "
                                 "preset leaves it out and keeps the joint <source>-mix-long", group="budgets")
    joint_long: bool = option(True, "run the joint <source>-mix-long row (the joint mix at the whole pipeline's "
                              "compute; its seed's longest stage, independent of the teachers and the merge)",
                              group="budgets")
    sft_prior: int = option(0, "prior preservation of sft teachers: this many base samples of the other tasks' "
                            "train prompts (OUT/data/reg-<task>) as each one's reg_data; 0 = none",
                            min=0, group="teachers")
    rl: dict = option({}, "extra fields of every GRPOConfig and OPDConfig (e.g. lr, noise_level, ema)",
                      group="overrides")
    nft: dict = option({}, "extra NFTConfig fields of nft teachers and the nft-mix rows", group="overrides")
    awm: dict = option({}, "extra AWMConfig fields of awm teachers and the awm-mix rows", group="overrides")
    sft: dict = option({}, "extra SFTConfig fields of sft teachers (e.g. steps, lr)", group="overrides")
    grpo: dict = option({}, "extra GRPOConfig fields (e.g. beta)", group="overrides")
    opd: dict = option({}, "extra OPDConfig fields (e.g. loss_mode, weighting)", group="overrides")
    coldstart: dict = option({}, "extra ColdStartConfig fields (e.g. sft_steps, sft_samples_per_task)",
                             group="overrides")

    def check(self) -> None:
        for task, source in self.teachers.items():
            if task not in TASKS or source not in TEACHER_SOURCES:
                raise ValueError(f"teachers[{task!r}] = {source!r} is invalid: map a task ({', '.join(TASKS)}) to "
                                 f"a source ({', '.join(TEACHER_SOURCES)})")
        if self.joint == "auto" and {"nft", "awm"} <= set(self.teachers.values()):
            raise ValueError("joint='auto' is ambiguous: the teachers use both nft and awm; set joint to nft, awm "
                             "or none")
        for name in ("rl", "grpo", "opd", "coldstart", "nft", "awm", "sft"):
            taken = sorted(set(getattr(self, name)) & set(SFT_RESERVED if name == "sft" else RESERVED))
            if taken:
                raise ValueError(f"{name} sets {taken}, which the benchmark sets itself: change the budgets "
                                 f"(teacher, distill) or beta_mar instead")

    @classmethod
    def preset(cls, name: str = "default", **overrides: Any) -> ReproduceConfig:
        """The ``smoke``, ``default`` or ``strong`` preset with ``overrides`` (any field) applied.

        ``strong``: ``default`` with the strongest teacher of each task in the teacher benchmark
        (``docs/notes/teachers-tiny.md``): DiffusionNFT for compose, SFT on 512 renders for text (400 steps, where
        its quality had not dropped yet), AWM for prefer and quality, each RL teacher 48 optimizer steps
        (about the steps they took in the benchmark's 240 s), the student's prompts sampled by each task's
        remaining distance to its teacher, a merge init weighted towards the teachers that learn
        (``STRONGEST_MERGE_WEIGHTS``, which the app's whole pipeline uses too), and the joint ``awm-mix`` rows;
        without the seesaw rows and ``grpo-mix-long`` (GRPO runs that keep a seed within 60 minutes of a 2-core CPU when
        left out; ``docs/results-tiny-grpo-teachers.md`` has them).
        """
        if name not in BUDGETS:
            raise ValueError(f"budget {name!r} is unknown: use one of {', '.join(BUDGETS)}")
        base: dict[str, Any] = {"budget": name, "eval_merged": True}
        if name == "strong":
            base.update(teachers=dict(STRONGEST_SOURCES), joint="awm",
                        teacher=StageBudget(24, batch_size=64, group_size=4), sft={"steps": 400},
                        nft={"ema": False}, awm={"ema": False}, seesaw=False, grpo_mix_long=False)
        if name in ("default", "strong"):
            base["coldstart"] = {"sft_steps": 100, "sft_batch_size": 32, "sft_samples_per_task": 64}
            base["rl"] = {"lr": 1e-3}
            base["opd"] = {"lr": 1e-4}  # from the merge init, 1e-3 throws the student off (docs/notes/opd-tuning.md)
            if name == "strong":  # the CFG-3 student learns more from teachers queried at its own guidance than at
                base["opd"]["teacher_guidance"] = 3.0  # theirs (seed 0: docs/notes/strong-seed0-guidance.md)
                # prompts per task by the remaining distance to each teacher: +0.006 +- 0.004 on the average,
                # above fixed sampling on 3 of 3 seeds (docs/notes/seesaw.md)
                base["opd"]["task_sampling"] = "distance"
                # the merge init at text 0.75, prefer 0.5 (the teachers that learn) instead of 0.25 each: the
                # student keeps what its init brings (docs/notes/weighted-merge.md)
                base["coldstart"]["weights"] = dict(STRONGEST_MERGE_WEIGHTS)
        else:
            tiny = StageBudget(epochs=1, batch_size=4, group_size=2, train_batch_size=4, optimizer_steps_per_epoch=1)
            base.update(teacher=tiny, distill=tiny, num_steps=2, eval_steps=2, eval_limit=2, eval_batch_size=16,
                        checkpoint_every=1, rl={"ema": False, "lora_rank": 2, "lora_alpha": 4.0},
                        coldstart={"sft_steps": 2, "sft_batch_size": 4, "sft_samples_per_task": 2, "eval_steps": 2,
                                   "lora_rank": 2, "lora_alpha": 4.0}, sft_images=4,
                        **{k: {"ema": False, "lora_rank": 2, "lora_alpha": 4.0, "timesteps_per_sample": 1}
                           for k in ("nft", "awm")},
                        sft={"steps": 2, "batch_size": 2, "lora_rank": 2, "lora_alpha": 4.0})
        for key in ("rl", "grpo", "opd", "coldstart", "nft", "awm", "sft"):  # merge the dicts rather than replace
            if key in overrides:
                overrides[key] = {**base.get(key, {}), **overrides[key]}
        return cls(**{**base, **overrides})

    def source(self, task: str) -> str:
        """The teacher source of ``task`` (grpo unless ``teachers`` names another)."""
        return self.teachers.get(task, "grpo")

    def joint_source(self) -> str | None:
        """The algorithm of the ``<source>-mix`` rows, or None when there are none (see ``joint``)."""
        if self.joint != "auto":
            return None if self.joint == "none" else self.joint
        rl = {s for s in self.teachers.values() if s in ("nft", "awm")}
        if rl:
            return rl.pop()
        return "awm" if "sft" in self.teachers.values() else None

    @classmethod
    def _from_fields(cls, data: dict) -> ReproduceConfig:
        """A ``budget`` key picks the preset the other keys override."""
        data = dict(data)
        return cls.preset(data.pop("budget", "default"), **data)
