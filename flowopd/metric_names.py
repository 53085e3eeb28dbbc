"""The names of the metrics stages report, in one place: the trainers write them, the reproduce report's
plots and the app's plots read them.

A name is a path: ``reward/<task>``, ``kl/teacher/step_<j>``. A reproduce benchmark run prefixes its
stages' metrics with ``seed<k>/<stage>/`` (:class:`flowopd.events.Scoped`).
"""

from __future__ import annotations

STEP, EPOCH = "step", "epoch"
LOSS, LR, GRAD_NORM = "loss", "lr", "grad_norm"
IMAGES_PER_S, STEP_TIME_S, EPOCH_TIME_S = "images_per_s", "step_time_s", "epoch_time_s"
TRAINED_FRACTION = "trained_fraction"
REWARD_TOTAL = "reward/total"
# GRPO: the KL to the base; OPD: to the routed teacher and to the MAR anchor (means over trained steps).
KL_BASE, KL_TEACHER, KL_ANCHOR = "kl/base", "kl/teacher", "kl/anchor"
KL_NAMES = (KL_BASE, KL_TEACHER, KL_ANCHOR)
POLICY_LOSS, RATIO, CLIP_FRAC = "policy_loss", "ratio", "clip_frac"
REWARD_STD, ADVANTAGE_ABS = "reward_std", "advantage_abs"
# DiffusionNFT: the positive and negative branches' losses, the optimality weight, the velocity MSE to the base
# (its pull), the old adapter's soft-update decay.
NFT_POSITIVE, NFT_NEGATIVE, OPTIMALITY = "nft/positive", "nft/negative", "nft/optimality"
REF_MSE, OLD_DECAY = "nft/ref_mse", "nft/old_decay"
# Advantage Weighted Matching: the flow-matching loss (-logp), the velocity MSE to the base and to the policy EMA
# (its pulls); the ratio and clip fraction are POLICY_LOSS / RATIO / CLIP_FRAC above.
AWM_FM, AWM_REF_MSE, AWM_EMA_MSE = "awm/fm_loss", "awm/ref_mse", "awm/ema_mse"
# SFT with a regularization set: the flow-matching loss on the image set and on the regularization set.
SFT_DATA_LOSS, SFT_PRIOR_LOSS = "sft/data_loss", "sft/prior_loss"
EVAL_AVERAGE = "eval/average"
STAGES_DONE, TASKS_DONE = "stages_done", "tasks_done"
# Names before the metric module existed (curve.jsonl files of earlier reproduce runs): read them as the new ones.
LEGACY = {"kl_base": KL_BASE, "kl_teacher": KL_TEACHER, "kl_anchor": KL_ANCHOR}


def reward(name: str, task: str | None = None) -> str:
    """``reward/<name>``, or ``reward/<name>/<task>`` for a reward that scores several tasks.

    >>> reward("text"), reward("prefer", "compose")
    ('reward/text', 'reward/prefer/compose')
    """
    return f"reward/{name}" if task is None else f"reward/{name}/{task}"


def per_step(name: str, j: int) -> str:
    """A metric at denoising step ``j``: ``kl/teacher/step_3``."""
    return f"{name}/step_{j}"


def per_task(name: str, task: str) -> str:
    """A metric over one task's samples: ``kl/teacher/text``."""
    return f"{name}/{task}"


def eval_metric(task: str) -> str:
    """The evaluation protocol's score of a task: ``eval/text``."""
    return f"eval/{task}"


def canonical(name: str) -> str:
    """Today's spelling of a metric name (legacy ``kl_teacher/step_3`` -> ``kl/teacher/step_3``).

    >>> canonical("kl_teacher/step_3"), canonical("loss")
    ('kl/teacher/step_3', 'loss')
    """
    head, sep, rest = name.partition("/")
    return LEGACY[head] + sep + rest if head in LEGACY else name
