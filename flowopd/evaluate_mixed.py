"""Evaluation on the mixed split: prompts that touch two tasks (e.g. ``a sign that says "AK" and two red
circles``), each image scored by the reward of every task its prompt is labelled with.

The protocol is :mod:`flowopd.evaluate`'s (test prompts, seeds ``cfg.seed + i``, deterministic ODE, steps and
CFG from :class:`flowopd.config.eval.EvalConfig`), and each task's metric is the one its own test split gets
(:func:`flowopd.evaluate.task_metric`): ``compose`` strict GenEval accuracy (mean over the mixed split's two
categories, ``object`` and ``counting``), ``text`` the mean OCR reward. ``mean`` is the unweighted mean of the
tasks' metrics (every mixed prompt weighs its two tasks equally). :func:`mixed_rewards` gives the tasks' training
rewards too (``compose``'s partial credit is finer than its strict accuracy when few images are fully right).
"""

from __future__ import annotations

import logging

import numpy as np

from .config.eval import EvalConfig
from .evaluate import round_robin, task_metric
from .models.base import FlowModel
from .rewards import get_reward
from .sampling import generate
from .world.prompts import MIXED, task_weights
from .world.splits import load_prompts

log = logging.getLogger(__name__)


def _by_task(images, records: list[dict], score) -> dict[str, float]:
    """``score(task, images, records)`` over the records labelled with each task (``task_weights``)."""
    tasks = sorted({t for r in records for t in task_weights(r)}, key=lambda t: (t != "compose", t))
    out = {}
    for task in tasks:
        idx = [i for i, r in enumerate(records) if task in task_weights(r)]
        out[task] = score(task, images[idx] if hasattr(images, "shape") else [images[i] for i in idx],
                          [records[i] for i in idx])
    return out


def mixed_metrics(images, records: list[dict]) -> dict[str, float]:
    """Each labelled task's metric over ``images`` (one per record, any format the rewards take), and their
    ``mean``.

    Raises:
        ValueError: a record has no task labels (``flowopd.world.prompts.task_weights``).
    """
    out = _by_task(images, records, task_metric)
    out["mean"] = float(np.mean(list(out.values())))
    return out


def mixed_rewards(images, records: list[dict]) -> dict[str, float]:
    """Each labelled task's mean training reward (``compose``: partial credit per clause) over ``images``."""
    return _by_task(images, records, lambda task, ims, recs: float(np.mean(
        get_reward(task)(ims, [r["prompt"] for r in recs], recs))))


def evaluate_mixed(model: FlowModel, cfg: EvalConfig | None = None, *, limit: int | None = None,
                   model_name: str = "") -> dict:
    """Generate the mixed test split with the active adapter and score it; returns ``{"model", "protocol",
    "prompts", "metrics", "rewards"}`` as :func:`mixed_metrics` and :func:`mixed_rewards` give them
    (``limit``: the first prompts only, round-robin over the two categories)."""
    cfg = cfg or EvalConfig()
    records = load_prompts(MIXED, "test")
    records = [r for r in (records if limit is None else round_robin(records, limit))
               for _ in range(cfg.images_per_prompt)]
    images = generate(model, [r["prompt"] for r in records], seeds=[cfg.seed + i for i in range(len(records))],
                      num_steps=cfg.num_steps, guidance=cfg.scale(), batch_size=cfg.batch_size)
    metrics = mixed_metrics(images, records)
    log.info("mixed eval %s: %s", model_name or "model", ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return {"model": model_name, "protocol": {"num_steps": cfg.num_steps, "guidance": cfg.scale(),
                                              "seed": cfg.seed, "images_per_prompt": cfg.images_per_prompt},
            "prompts": len(records), "metrics": metrics, "rewards": mixed_rewards(images, records)}
