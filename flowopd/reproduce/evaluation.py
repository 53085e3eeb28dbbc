"""Evaluating a row: the fixed protocol (:func:`flowopd.evaluate.evaluate_adapter`) with the stage's adapter.

``limit`` (the smoke budget's ``eval_limit``) evaluates the first prompts of each test split only
(:func:`flowopd.evaluate.eval_records`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..evaluate import EvalConfig, evaluate_adapter
from ..models.base import FlowModel

log = logging.getLogger(__name__)


def row_metrics(model: FlowModel, adapter: str | Path | None, cfg: EvalConfig, limit: int | None = None,
                merged: bool = False) -> dict[str, float]:
    """Metrics of ``model`` with adapter folder ``adapter`` active (None: the base): the tasks and
    ``average`` (their mean), each in [0, 1]; a row of the results table.

    ``merged`` folds the adapter into the base weights for the evaluation (see :func:`evaluate_adapter`).
    """
    report = evaluate_adapter(model, None if adapter is None else Path(adapter), cfg, limit=limit, merged=merged)
    metrics = {task: float(v) for task, v in report["metrics"].items()}
    metrics["average"] = sum(metrics.values()) / len(metrics)
    return metrics
