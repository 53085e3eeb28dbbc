"""The fixed evaluation protocol: test prompts, fixed seeds, deterministic ODE sampling.

Metrics, each in [0, 1]: ``compose`` = strict GenEval accuracy (mean over the six categories of the
per-image correctness), ``text`` = mean OCR reward, ``prefer`` and ``quality`` = mean reward on their
test prompts; ``average`` = mean of the four (the paper's "Average" column). These are the tiny world's
rewards; an SD3 model is scored by the paper's real-image rewards (``geneval``, ``ocr``, ``pickscore``,
``deqa``: the model's ``default_task_rewards``), and ``EvalConfig.task_rewards`` names others per task.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from . import metric_names as names
from .config.eval import EvalConfig  # re-exported; the config lives in a torch-free module
from .events import Sample, StopRequested, TrainingCallback, begin
from .models.base import FlowModel, to_pil
from .rewards import compose_correct, get_reward
from .sampling import generate
from .world.splits import load_prompts, use_prompt_sets

log = logging.getLogger(__name__)


def task_metric(task: str, images, records: list[dict], reward: str | None = None) -> float:
    """The metric of ``task`` on its test images: the mean of ``reward`` (default: the tiny world's reward of the
    task's name); the world's ``compose`` is strict GenEval accuracy, the mean over categories (``tag``) of the
    per-image correctness."""
    prompts = [r["prompt"] for r in records]
    reward = reward or task
    if reward == "compose":
        correct = np.array(compose_correct(images, prompts, records))
        tags = np.array([r.get("tag", "") for r in records])
        return float(np.mean([correct[tags == t].mean() for t in sorted(set(tags))]))
    return float(np.mean(get_reward(reward)(images, prompts, records)))


def mean_task_reward(model: FlowModel, adapter: str | None, records: list[dict], seeds: list[int], *, reward: str,
                     steps: int, guidance: float) -> float:
    """The mean of ``reward`` over one ODE sample per record (at ``seeds``, ``steps`` steps, ``guidance``) under the
    loaded adapter ``adapter`` (None: the base): how a cold start and distance sampling score a teacher."""
    from .adapters import use_adapter

    prompts = [r["prompt"] for r in records]
    with use_adapter(model, adapter):
        images = generate(model, prompts, seeds=seeds, num_steps=steps, guidance=guidance)
    return float(np.mean(get_reward(reward)(images, prompts, records)))


def eval_records(task: str, limit: int | None = None) -> list[dict]:
    """The test prompts of ``task``: all of them, or the first ``limit`` round-robin over their ``tag``.

    Round-robin over ``compose``'s six categories, so each category a subset reaches counts once in the
    category mean, as in the full protocol.
    """
    records = load_prompts(task, "test")
    return records if limit is None else round_robin(records, limit)


def round_robin(records: list[dict], limit: int) -> list[dict]:
    """The first ``limit`` records, round-robin over their ``tag`` (category) when they have one.

    Example:
        >>> recs = [{"tag": "a", "i": 0}, {"tag": "a", "i": 1}, {"tag": "b", "i": 2}]
        >>> [r["i"] for r in round_robin(recs, 2)]
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


def evaluate(model: FlowModel, cfg: EvalConfig | None = None, *, model_name: str = "",
             on_images: Callable[[str, list[dict], object], None] | None = None,
             callback: TrainingCallback | None = None, samples_per_task: int = 0, limit: int | None = None) -> dict:
    """Run the protocol; returns ``{"model", "protocol", "metrics", "average"}``.

    ``limit``: evaluate the first ``limit`` prompts of each test split only (:func:`eval_records`), e.g. for a
    smoke run; None: all of them.

    ``on_images(task, records, images)`` sees every task's images (e.g. to save a grid). ``callback``
    (:mod:`flowopd.events`) sees the evaluation as a stage of one step per task: progress before each
    task's sampling, its first ``samples_per_task`` images, ``eval/<task>`` and ``tasks_done`` after it,
    ``eval/average`` at the end; its ``should_stop`` is polled between tasks.

    Raises:
        StopRequested: the callback asked to stop (the finished tasks were reported).
    """
    cfg = cfg or EvalConfig()
    if cfg.prompt_sets:  # the user's test prompts for the tasks they name, the world's again afterwards
        previous = use_prompt_sets(cfg.prompt_sets)
        try:
            return evaluate(model, dataclasses.replace(cfg, prompt_sets={}), model_name=model_name,
                            on_images=on_images, callback=callback, samples_per_task=samples_per_task, limit=limit)
        finally:
            use_prompt_sets(previous)
    start = time.perf_counter()
    clock = begin(callback, "eval", len(cfg.tasks))
    task_rewards = dict(model.default_task_rewards if cfg.task_rewards is None else cfg.task_rewards)
    metrics = {}
    for k, task in enumerate(cfg.tasks):
        records = [r for r in eval_records(task, limit) for _ in range(cfg.images_per_prompt)]
        seeds = [cfg.seed + i for i in range(len(records))]
        if callback is not None:
            callback.on_progress(clock.progress(k, f"sampling {task} ({len(records)} images)"))
        images = generate(model, [r["prompt"] for r in records], seeds=seeds, num_steps=cfg.num_steps,
                          guidance=cfg.scale(), batch_size=cfg.batch_size)
        if on_images:
            on_images(task, records, images)
        metrics[task] = task_metric(task, images, records, task_rewards.get(task))
        log.info("eval %s: %.4f", task, metrics[task])
        if callback is not None:
            for record, seed, image in zip(records, seeds, to_pil(images[:samples_per_task])):
                callback.on_sample(k + 1, Sample(image, record["prompt"], seed, {"task": task}))
            callback.on_metrics(k + 1, {names.eval_metric(task): metrics[task], names.TASKS_DONE: k + 1})
            callback.on_progress(clock.progress(k + 1, f"{task}: {metrics[task]:.4f}"))
            if k + 1 < len(cfg.tasks) and callback.should_stop():
                callback.on_end("eval", "stopped")
                raise StopRequested(f"evaluation stopped after {k + 1} of {len(cfg.tasks)} tasks")
    average = float(np.mean(list(metrics.values())))
    log.info("evaluation took %.1f s", time.perf_counter() - start)
    if callback is not None:
        callback.on_metrics(len(cfg.tasks), {names.EVAL_AVERAGE: average})
        callback.on_end("eval", "finished")
    protocol = {**asdict(cfg), "guidance": cfg.scale(), "task_rewards": {t: task_rewards.get(t, t) for t in cfg.tasks}}
    return {"model": model_name, "protocol": protocol, "metrics": metrics, "average": average}


EVAL_ADAPTER = "evaluated"  # the name an adapter folder is loaded under for its evaluation


def evaluate_adapter(model: FlowModel, adapter: str | Path | None, cfg: EvalConfig | None = None, *,
                     model_name: str = "", merged: bool = False, **kwargs: Any) -> dict:
    """:func:`evaluate` with an adapter active, sampled at its own guidance unless ``cfg.guidance`` overrides it
    (its ``adapter.json``'s, else ``cfg.base_guidance``); returns the same report, whose protocol says the
    guidance used.

    Args:
        adapter: the name of an adapter already on the model (sampled at ``cfg.scale()``), an adapter folder
            (loaded as ``evaluated`` and dropped again afterwards), or None for the base model.
        merged: fold the adapter into the base weights for the evaluation
            (:func:`flowopd.adapters.merged_adapter`): the same images up to float rounding, about a quarter
            less time on the tiny model.
        kwargs: the rest of :func:`evaluate`'s keywords (``on_images``, ``callback``, ``limit``, ...).

    Raises:
        flowopd.adapters.AdapterError: the folder is not an adapter of this base model.
    """
    from .adapters import adapter_guidance, adapter_names, drop_adapter, merged_adapter, replace_adapter, use_adapter

    cfg = cfg or EvalConfig()
    load = adapter is not None and (isinstance(adapter, Path) or adapter not in adapter_names(model))
    if load and cfg.guidance is None:  # the adapter's own guidance (docs/method.md, "Guidance")
        cfg = dataclasses.replace(cfg, guidance=adapter_guidance(adapter, cfg.base_guidance))
    if load:
        replace_adapter(model, adapter, EVAL_ADAPTER)
    name = EVAL_ADAPTER if load else adapter
    active = merged_adapter if merged and name is not None else use_adapter
    try:
        with active(model, name):
            report = evaluate(model, cfg, model_name=model_name, **kwargs)
    finally:
        if load:
            drop_adapter(model, EVAL_ADAPTER)
    log.info("evaluated %s: %s", adapter or "the base", ", ".join(f"{k} {v:.3f}" for k, v in report["metrics"].items()))
    return report
