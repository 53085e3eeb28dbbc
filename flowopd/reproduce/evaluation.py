"""Evaluating a row: the fixed protocol (:func:`flowopd.evaluate.evaluate`) with an adapter active.

``limit`` (the smoke budget's ``eval_limit``) evaluates the first prompts of each test split only; for
``compose`` the prompts are taken round-robin over its six categories, so each category the subset
reaches counts once in the category mean, as in the full protocol.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..adapters import drop_adapter, merged_adapter, replace_adapter, use_adapter
from ..evaluate import EvalConfig, evaluate, task_metric
from ..models.base import FlowModel
from ..sampling import generate
from ..world.splits import load_prompts

log = logging.getLogger(__name__)
EVAL_ADAPTER = "evaluated"


def subset(records: list[dict], limit: int) -> list[dict]:
    """The first ``limit`` records, round-robin over their ``tag`` (category) when they have one.

    Example:
        >>> recs = [{"tag": "a", "i": 0}, {"tag": "a", "i": 1}, {"tag": "b", "i": 2}]
        >>> [r["i"] for r in subset(recs, 2)]
        [0, 2]
    """
    by_tag: dict[str, list[dict]] = {}
    for record in records:
        by_tag.setdefault(str(record.get("tag", "")), []).append(record)
    out: list[dict] = []
    queues = list(by_tag.values())
    while len(out) < min(limit, len(records)):
        for queue in queues:
            if queue and len(out) < limit:
                out.append(queue.pop(0))
    return out


def evaluate_limited(model: FlowModel, cfg: EvalConfig, limit: int) -> dict[str, float]:
    """The protocol on ``limit`` test prompts per task (same seeds, steps and metric code)."""
    metrics = {}
    for task in cfg.tasks:
        records = [r for r in subset(load_prompts(task, "test"), limit) for _ in range(cfg.images_per_prompt)]
        seeds = [cfg.seed + i for i in range(len(records))]
        images = generate(model, [r["prompt"] for r in records], seeds=seeds, num_steps=cfg.num_steps,
                          guidance=cfg.guidance, batch_size=cfg.batch_size)
        metrics[task] = task_metric(task, images, records)
    return metrics


def evaluate_adapter(model: FlowModel, adapter: str | Path | None, cfg: EvalConfig,
                     limit: int | None = None, merged: bool = False) -> dict[str, float]:
    """Metrics of ``model`` with adapter folder ``adapter`` active (None: the base): the four tasks and
    ``average`` (their mean), each in [0, 1].

    ``merged`` folds the adapter into the base weights for the evaluation (:func:`merged_adapter`): the
    same images up to float rounding, about a quarter less time on the tiny model.
    """
    if adapter is not None:
        replace_adapter(model, adapter, EVAL_ADAPTER)
    active = merged_adapter if merged and adapter is not None else use_adapter
    try:
        with active(model, EVAL_ADAPTER if adapter is not None else None):
            metrics = evaluate(model, cfg)["metrics"] if limit is None else evaluate_limited(model, cfg, limit)
    finally:
        if adapter is not None:
            drop_adapter(model, EVAL_ADAPTER)
    metrics = {task: float(v) for task, v in metrics.items()}
    metrics["average"] = sum(metrics.values()) / len(metrics)
    log.info("evaluated %s: %s", adapter or "the base", ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return metrics
