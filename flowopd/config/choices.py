"""The named choices of config fields, owned here once and imported everywhere else (the configs, the losses,
the command line, the app's forms). Torch-free, so the command line checks a value before torch loads.

The rewards a config may name live in :mod:`flowopd.reward_names` (a registry that grows as rewards register).
"""

from __future__ import annotations

# distillation (docs/method.md, "Per-step KL" and "Routing")
LOSS_MODES = ("kl", "pg", "paper")  # analytic KL | sampled log-ratio advantage | the paper's zero-expected-grad form
WEIGHTINGS = ("code", "paper", "uniform")  # per-step weight of the KL
# what each sample's KL is divided by (docs/method.md, "KL normalisation")
KL_NORMS = ("none", "per-sample", "per-timestep", "per-task", "global")
STUDENT_PARAMS = ("lora", "full")  # what a distillation student trains (flowopd.adapters.full)
# AWM (docs/method.md, "AWM")
AWM_WEIGHTINGS = ("uniform", "ghuber")  # the flow-matching "log-prob": plain, or the released generalised Huber
EMA_TARGET_SCHEDULES = ("constant", "linear")  # the decay of AWM's EMA target: fixed, or min(decay, 0.001 step)
ROUTINGS = ("per-sample", "alternate", "blend")
TASK_SAMPLINGS = ("fixed", "distance")  # prompt_tasks as given | in proportion to the distance to each teacher
# cold start (docs/method.md, "Cold start")
COLDSTART_MODES = ("merge", "merge-avg", "sft", "none")
MERGE_COMBINATIONS = ("cat", "svd")  # how the merge modes combine the teachers' LoRA factors
MERGE_WEIGHTINGS = ("equal", "gain")  # the merge's weights when none are given: 1/n each | by measured gain
# training
PRECISIONS = ("no", "fp16", "bf16")
EMA_WARMUPS = ("mean", "legacy")  # flowopd.training.ema's warm-ups
LR_SCHEDULES = ("constant", "cosine", "linear")
REPORT_TARGETS = ("none", "tensorboard", "wandb")  # flowopd.trackers: where a run's metrics also go
# export (flowopd export, the app's Export tab)
EXPORT_FORMATS = ("flowopd", "diffusers", "comfyui", "peft", "fused")

__all__ = ["AWM_WEIGHTINGS", "COLDSTART_MODES", "EMA_TARGET_SCHEDULES", "EMA_WARMUPS", "EXPORT_FORMATS", "KL_NORMS",
           "LOSS_MODES", "LR_SCHEDULES", "MERGE_COMBINATIONS", "MERGE_WEIGHTINGS", "PRECISIONS", "REPORT_TARGETS",
           "ROUTINGS", "STUDENT_PARAMS", "TASK_SAMPLINGS", "WEIGHTINGS"]
