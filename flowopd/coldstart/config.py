"""The cold start's config (``kind="coldstart"``): the student's first LoRA from the teachers. Torch-free.
The method: docs/method.md, "Cold start".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config.base import ConfigBase, fail, option
from ..config.choices import COLDSTART_MODES, MERGE_COMBINATIONS, MERGE_WEIGHTINGS, PRECISIONS, REPORT_TARGETS
from ..config.fields import check_task_rewards, check_weights
from ..models.presets import SD35_MEDIUM
from ..reward_names import SD35_TASK_REWARDS
from ..world.prompt_sets import check_prompt_sets
from ..world.prompts import TASKS

__all__ = ["ColdStartConfig"]


@dataclass
class ColdStartConfig(ConfigBase, kind="coldstart"):
    """The student's initial LoRA: merged teachers, their element-wise average, SFT on teacher samples, or none."""

    mode: str = option("merge", "merge (exact delta merge) | merge-avg (code's A/B average) | sft | none (fresh LoRA)",
                       choices=COLDSTART_MODES, group="merge")
    teachers: dict = option({}, "task -> teacher adapter folder", group="merge")
    weights: dict = option({}, "task -> merge weight; empty = merge_weighting's", group="merge")
    merge_weighting: str = option("equal", "merge weights when weights is empty: equal (summing to 1) | gain (in "
                                  "proportion to each teacher's measured gain over the base; docs/method.md)",
                                  choices=MERGE_WEIGHTINGS, group="merge")
    gain_prompts: int = option(32, "train prompts per task on which merge_weighting gain measures each teacher's "
                               "gain (ODE, eval_steps steps; teacher and base at guidance, the student's)",
                               min=1, group="merge")
    combination: str = option("cat", "merge mode: cat (exact, rank = sum of ranks) | svd (truncated to svd_rank)",
                              choices=MERGE_COMBINATIONS, group="merge")
    svd_rank: int | None = option(None, "rank of an svd merge; None = the largest teacher rank", min=1, group="merge")
    model: str | None = option(None, "base model (as in the GRPO config); None = the built-in tiny model", group="SFT")
    resolution: int | None = option(None, "image side in pixels of an SD3 base (None = its family's: 512 for SD3.5 "
                                    "Medium, 1024 for Large and SD3); the tiny model draws its own size", min=16,
                                    max=4096, group="SFT")
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
    prompt_sets: dict = option({}, "task -> folder of your own prompts (Flow-GRPO's layout) the teachers are sampled "
                               "on in mode sft (and merge_weighting gain), instead of the tiny world's splits",
                               group="SFT")
    report_to: str = option("none", "also send the run's metrics and samples to: none | tensorboard (event files in "
                            "the run folder) | wandb (offline unless configured); the package is optional",
                            choices=REPORT_TARGETS, group="SFT")
    gradient_checkpointing: bool | None = option(None, "recompute the transformer's activations in the backward "
                                                 "pass of sft (less memory, a slower step); None = on for SD3, off "
                                                 "for the tiny model", group="SFT")
    mixed_precision: str = option("no", "no | fp16 | bf16 for the frozen base during sft (the LoRA stays fp32)",
                                  choices=PRECISIONS, group="SFT")
    task_rewards: dict = option({}, "task -> the reward sft_best_of ranks its samples by (e.g. {\"text\": \"ocr\"}); "
                                "a task not named: the tiny world's reward of its name", group="SFT")
    eval_steps: int = option(20, "ODE steps of the teacher samples (40 for SD3.5)", min=1, max=1000, group="SFT")
    guidance: float = option(3.0, "the student's CFG scale (its adapter's guidance); sft samples each teacher at its "
                             "own guidance (its adapter.json), this one when it has none", min=0, group="SFT")

    def check(self) -> None:
        if self.mode != "none" and not self.teachers:
            fail("teachers", self.teachers, f"mode {self.mode!r} needs teachers (task -> folder), or use mode 'none'")
        bad = sorted(set(self.teachers) - set(TASKS))
        if bad:
            fail("teachers", self.teachers, f"{bad} are not tasks; use names from {', '.join(TASKS)}")
        check_prompt_sets(self.prompt_sets)
        if self.weights:
            check_weights("weights", self.weights)
            if set(self.weights) != set(self.teachers):
                fail("weights", self.weights, f"give one weight per teacher task {sorted(self.teachers)}, or none")
        check_task_rewards(self.task_rewards)

    def merge_weights(self) -> dict[str, float]:
        """Task -> weight, equal weights summing to 1 when none are given (``merge_weighting`` ``gain`` measures
        them instead: :mod:`flowopd.coldstart.gains`)."""
        return dict(self.weights) if self.weights else {t: 1 / len(self.teachers) for t in self.teachers}

    @classmethod
    def sd35_medium(cls, **overrides: Any) -> ColdStartConfig:
        """SD3.5-M: r 32 / alpha 64, 40-step teacher samples at CFG 4.5, SFT lr 1e-4."""
        return cls(**{"model": SD35_MEDIUM, "lora_rank": 32, "lora_alpha": 64.0, "eval_steps": 40, "guidance": 4.5,
                      "sft_steps": 1000, "sft_batch_size": 24, "task_rewards": dict(SD35_TASK_REWARDS),
                      "mixed_precision": "bf16", **overrides})
