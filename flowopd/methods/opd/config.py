"""The on-policy distillation student's config (``kind="opd"``): teachers, routing, the per-step KL, MAR;
tiny-world defaults and ``sd35_medium()``. Torch-free. The method: docs/method.md, "On-policy distillation".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...config.base import fail, option
from ...config.choices import KL_NORMS, LOSS_MODES, ROUTINGS, STUDENT_PARAMS, TASK_SAMPLINGS, WEIGHTINGS
from ...config.fields import check_task_rewards, check_weights
from ...config.rl import SDERLConfig
from ...reward_names import SD35_TASK_REWARDS
from ...world.prompts import MIXED, MIXED_TASKS, PROMPT_SETS, TASKS

__all__ = ["OPDConfig"]


@dataclass
class OPDConfig(SDERLConfig, kind="opd"):
    """Stage 2: on-policy distillation of the routed teachers into the student, with MAR."""

    teachers: dict = option({}, "task -> teacher adapter folder; every prompt task needs one", group="distillation")
    teacher_guidance: float | None = option(None, "CFG scale of every teacher's target velocity; None = each "
                                            "teacher's own (its adapter.json's guidance, else the student's)",
                                            min=0, min_open=True, group="distillation")
    init: str | None = option(None, "student's initial adapter folder (a cold start); None = a fresh LoRA",
                              group="distillation")
    student_params: str = option("lora", "lora (a LoRA: the init's, else lora_rank) | full (every Linear layer of the "
                                 "transformer trained in full, from the base plus the init's delta); docs/method.md",
                                 choices=STUDENT_PARAMS, group="distillation")
    prompt_tasks: dict = option({"compose": 1.0, "text": 1.0, "prefer": 1.0},
                                "task -> sampling weight of its train prompts (per-sample and blend routing); "
                                "'mixed' adds the mixed split's prompts, which touch compose and text at once "
                                "(both need a teacher)", group="distillation")
    routing: str = option("per-sample", "per-sample (each prompt to its task's teacher) | alternate (a task per "
                          "epoch) | blend (the paper's alpha_k(c): the teachers of a prompt's tasks, mixed by its "
                          "task labels); docs/method.md, Routing",
                          choices=ROUTINGS, group="distillation")
    epochs_per_task: dict = option({}, "alternate routing: task -> epochs per cycle, e.g. "
                                   "{\"text\": 1, \"compose\": 3}",
                                   group="distillation")
    loss_mode: str = option("kl", "kl (analytic KL) | pg (sampled log-ratio advantage) | paper (zero expected grad)",
                            choices=LOSS_MODES, group="distillation")
    weighting: str = option("code", "per-step KL weight: code (released scale) | paper (w(t)) | uniform (velocity MSE)",
                            choices=WEIGHTINGS, group="distillation")
    kl_norm: str = option("none", "each sample's KL divided by the previous epoch's mean KL of: none | per-sample | "
                          "per-timestep | per-task | global; loss_mode kl only; docs/method.md",
                          choices=KL_NORMS, group="distillation")
    beta_mar: float = option(0.02, "weight of Manifold Anchor Regularization (0.02 in the paper); 0 turns it off",
                             min=0, group="distillation")
    mar_anchor: str = option("base", "MAR anchor: 'base' (adapters disabled), a teacher's task, or an adapter folder",
                             group="distillation")
    mask_zero_std: bool = option(False, "skip prompt groups whose task rewards are all equal (off for OPD, as "
                                        "released)",
                                 group="distillation")
    log_rewards: bool = option(True, "score every sample with its task's reward, logged as reward/<task> (costs time)",
                               group="distillation")
    task_rewards: dict = option({}, "task -> the reward that scores it for log_rewards and mask_zero_std (e.g. "
                                "{\"text\": \"ocr\"}, logged as reward/<name>); a task not named: the tiny world's "
                                "reward of its name",
                                group="distillation")
    task_sampling: str = option("fixed", "fixed (prompt_tasks) | distance (each epoch, tasks in proportion to the "
                                "student's remaining reward gap to its teacher; needs log_rewards)",
                                choices=TASK_SAMPLINGS, group="distillation")
    teacher_rewards: dict = option({}, "task -> its teacher's mean reward, the distance's target; {} = measured at "
                                   "the start on reference_prompts train prompts per task", group="distillation")
    reference_prompts: int = option(32, "train prompts per task the teachers' rewards are measured on (distance)",
                                    min=1, group="distillation")
    distance_floor: float = option(0.2, "share of each epoch's prompts spread evenly over the tasks (distance), so "
                                   "a task the student reached stays trained", min=0, max=1, group="distillation")
    conflict_every: int = option(0, "every N epochs, log the cosine between tasks' gradients on the LoRA "
                                 "(conflict/<a>~<b>; costs a backward pass per task); 0 = never", min=0,
                                 group="distillation")
    adapter_name: str = option("student", "name of the trained LoRA adapter", group="distillation")

    def check(self) -> None:
        self._check_common()
        if not self.teachers or set(self.teachers) - set(TASKS):
            fail("teachers", self.teachers, f"map tasks ({', '.join(TASKS)}) to teacher adapter folders")
        check_weights("prompt_tasks", self.prompt_tasks, PROMPT_SETS, "task or prompt set")
        if self.routing == "alternate":
            check_weights("epochs_per_task", self.epochs_per_task)
            if any(not isinstance(n, int) for n in self.epochs_per_task.values()):
                fail("epochs_per_task", self.epochs_per_task, 'use whole epochs, e.g. {"text": 1, "compose": 3}')
        tasks = sorted(self.epochs_per_task if self.routing == "alternate" else set(self.prompt_tasks) - {MIXED})
        if self.routing != "alternate" and MIXED in self.prompt_tasks:
            lacking = [t for t in MIXED_TASKS if t not in self.teachers]
            if lacking:
                fail("teachers", self.teachers, f"the {MIXED!r} prompts touch {', '.join(MIXED_TASKS)}, and "
                      f"{lacking} have no teacher: add teachers[{lacking[0]!r}] or drop {MIXED!r} from prompt_tasks")
        missing = [t for t in tasks if t not in self.teachers]
        if missing:
            fail("teachers", self.teachers, f"tasks {missing} have no teacher (tasks: {tasks}, teachers: "
                                             f"{sorted(self.teachers)}): add a teacher or drop the task")
        if not self.mar_anchor:
            fail("mar_anchor", self.mar_anchor, "use 'base', a teacher's task or an adapter folder")
        if self.mask_zero_std and not self.log_rewards:
            fail("mask_zero_std", self.mask_zero_std, "it needs the task rewards: set log_rewards to true")
        check_task_rewards(self.task_rewards)
        if self.kl_norm != "none" and self.loss_mode != "kl":
            fail("kl_norm", self.kl_norm, f"it divides the analytic KL: use loss_mode 'kl' (not "
                                          f"{self.loss_mode!r}) or kl_norm 'none'")
        if self.task_sampling == "distance":
            if not self.log_rewards:
                fail("task_sampling", self.task_sampling, "distance needs the student's rewards: set log_rewards")
            if self.routing == "alternate":
                fail("task_sampling", self.task_sampling, "alternate routing has its own schedule: use fixed")
            bad = sorted(set(self.teacher_rewards) - set(self.prompt_tasks))
            if bad:
                fail("teacher_rewards", self.teacher_rewards, f"{bad} are not prompt tasks of this run")

    @classmethod
    def sd35_medium(cls, **overrides: Any) -> OPDConfig:
        """The released multi-teacher OPD settings (its released configs): G 16, lr 1e-4, MAR 0.02 (paper); the
        paper's reward of
        each task scores it (task_rewards)."""
        return cls._sd35(**{"batch_size": 32, "group_size": 16, "train_batch_size": 4, "lr": 1e-4,
                            "task_rewards": dict(SD35_TASK_REWARDS), **overrides})
