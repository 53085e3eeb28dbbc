"""Running one stage of the plan: train (GRPO, cold start or OPD), then evaluate, skipping what is done.

Files in ``OUT/seed<k>/<stage>/``::

    checkpoint/    the trainer's resumable checkpoint (GRPO, OPD)
    adapter/       the stage's adapter (what is evaluated)
    curve.jsonl    one line of metrics per epoch (GRPO, OPD), kept consistent with the checkpoint on resume
    train.json     written when training has finished: config, compute, training time, the curve
    result.json    written when the stage is complete: train.json's fields plus the evaluation metrics

A stage with ``result.json`` is skipped; one with ``train.json`` only is evaluated; one with a checkpoint
resumes it. A folder whose stored config differs from the plan's is refused (another budget was run there).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import zlib
from pathlib import Path
from typing import Any

import torch

from ..evaluate import EvalConfig
from ..events import CallbackList, FunctionCallback, Progress, StopRequested, TrainingCallback
from ..layout import ADAPTER_DIR, CURVE_FILE, RESULT_FILE, TRAIN_FILE
from ..methods import get_method
from ..models import load_model
from ..world.dataset import ensure_image_set
from ..world.prompts import TASKS
from .config import ReproduceConfig
from .evaluation import row_metrics
from .plan import StageSpec
from .results import machine

log = logging.getLogger(__name__)


class ReproduceStopped(StopRequested):
    """A stop request ended a stage early; a trainer's checkpoint is saved and a re-run continues from it."""


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` atomically (a killed process never leaves half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def config_of(spec: StageSpec) -> dict | None:
    return None if spec.config is None else json.loads(spec.config.to_json())


# Stage config fields whose default changed behaviour when they were added: their value before.
STAGE_LEGACY = {"ema_warmup": "legacy"}


def stored_config(spec: StageSpec, stored: dict | None) -> dict | None:
    """A stage's stored config, with the fields its config class gained since at their defaults.

    A field added later (with a default that keeps the old behaviour, or its value before it existed in
    :data:`STAGE_LEGACY`) is no difference: the stage's results stay valid, so a benchmark can be continued by
    newer code.
    """
    if stored is None or spec.config is None:
        return stored
    added = {}
    for f in dataclasses.fields(spec.config):
        if f.name not in stored and f.init:
            if f.name in STAGE_LEGACY:
                added[f.name] = STAGE_LEGACY[f.name]
            elif f.default is not dataclasses.MISSING:
                added[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                added[f.name] = f.default_factory()
    return {**json.loads(json.dumps(added)), **stored}


def _check_config(spec: StageSpec, stored: dict, path: Path) -> None:
    planned, before = config_of(spec), stored_config(spec, stored.get("config"))
    if before != planned:
        fields = sorted(k for k in set(planned or {}) | set(before or {})
                        if (planned or {}).get(k) != (before or {}).get(k))
        raise ValueError(f"{path} was written with another config (fields {fields} differ from this benchmark's "
                         "plan): use another --out folder, or delete that stage's folder to redo it")


class _CurveFile(TrainingCallback):
    """A GRPO/OPD stage's per-epoch metric lines in ``curve.jsonl``, cut back to the checkpoint's step on resume."""

    def __init__(self, path: Path, resume_step: int, steps_per_epoch: int):
        self.path, self.steps_per_epoch = path, steps_per_epoch
        rows = [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []
        self.rows = [r for r in rows if r["step"] <= resume_step]
        path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))

    def on_metrics(self, step: int, metrics) -> None:
        row = {"step": step, **{k: float(v) if isinstance(v, float) else v for k, v in metrics.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)}}
        row["epoch_time_s"] = float(metrics.get("step_time_s", 0.0)) * self.steps_per_epoch
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def replay(callback: TrainingCallback | None, curve: list[dict]) -> None:
    """Send a stage's stored curve rows to ``callback`` (a resumed or finished stage's earlier epochs)."""
    if callback is not None:
        for row in curve:
            callback.on_metrics(int(row["step"]), {k: v for k, v in row.items() if k != "step"})


def stage_seed(seed: int, name: str) -> int:
    """The torch seed set before a stage, so whatever it draws from torch's global generator does not depend on
    what ran before in the process (a new LoRA's init comes from the stage config's seed, ``add_lora(seed=)``)."""
    return zlib.crc32(f"{seed}:{name}".encode()) & 0x7FFFFFFF


def _train_rl(spec: StageSpec, folder: Path, model, accelerator, callback: TrainingCallback | None,
              seed: int, set_size: int, prior_size: int) -> dict:
    """Train a GRPO, OPD, NFT, AWM or SFT stage (resuming its checkpoint); image sets of ``set_size`` renders
    (and an sft teacher's regularization set of ``prior_size`` base samples) are written first where the stage
    needs them."""
    from ..training.checkpoint import checkpoint_step

    cfg = spec.config
    sft = spec.kind == "sft"
    curve = _CurveFile(folder / CURVE_FILE, checkpoint_step(folder), 1 if sft else cfg.optimizer_steps_per_epoch)
    replay(callback, curve.rows)
    before = sum(r.get("epoch_time_s", 0.0) for r in curve.rows)
    start = time.perf_counter()
    if sft:
        task = spec.name.removeprefix("teacher-")
        ensure_image_set(Path(cfg.data), task, set_size, accelerator)
        if cfg.reg_data:  # the base's own samples of the other tasks' prompts
            others = ",".join(t for t in TASKS if t != task)
            ensure_image_set(Path(cfg.reg_data), others, prior_size, accelerator, model=model)
    else:
        for task in getattr(cfg, "sft_data", None) or {}:  # the forward-process joint rows' image sets
            ensure_image_set(Path(cfg.sft_data[task]), task, set_size, accelerator)
    train = get_method(spec.kind).load_trainer()
    result = train(model, cfg, folder, callback=CallbackList([curve, callback]), resume=True, accelerator=accelerator)
    if result.stopped:
        raise ReproduceStopped(f"{spec.name} (seed {seed}) stopped at step {result.step}; run again to continue")
    return {"optimizer_steps": result.step, "images": 0 if sft else result.epoch * cfg.batch_size,
            "train_time_s": before + time.perf_counter() - start, "curve": curve.rows}


def _train_coldstart(spec: StageSpec, folder: Path, model, callback: TrainingCallback | None) -> dict:
    from ..coldstart.trainer import run_coldstart

    curve: list[dict] = []
    start = time.perf_counter()
    try:
        run_coldstart(model, spec.config, folder, callback=CallbackList([FunctionCallback(curve.append), callback]))
    except StopRequested as err:  # an SFT cold start has no checkpoint: a re-run redoes it
        raise ReproduceStopped(f"{spec.name}: {err}; run again to redo it") from None
    return {**spec.planned_compute(), "train_time_s": time.perf_counter() - start, "curve": curve}


def train_stage(spec: StageSpec, folder: Path, cfg: ReproduceConfig, accelerator, seed: int,
                callback: TrainingCallback | None = None) -> dict:
    """Train the stage (or read its ``train.json``, replaying its curve to ``callback``); returns the record."""
    path = folder / TRAIN_FILE
    if path.is_file():
        record = read_json(path)
        _check_config(spec, record, path)
        replay(callback, record.get("curve", []))
        return record
    folder.mkdir(parents=True, exist_ok=True)
    if spec.kind == "eval":
        record = {"optimizer_steps": 0, "images": 0, "train_time_s": 0.0, "curve": []}
    else:
        torch.manual_seed(stage_seed(seed, spec.name))
        model = load_model(cfg.model, device=accelerator.device)
        if spec.kind == "coldstart":
            record = _train_coldstart(spec, folder, model, callback)
        else:
            record = _train_rl(spec, folder, model, accelerator, callback, seed, cfg.sft_images, cfg.sft_prior)
    record = {"stage": spec.name, "kind": spec.kind, "seed": seed, "config": config_of(spec), "machine": machine(),
              **record}
    write_json(path, record)
    return record


def eval_config(cfg: ReproduceConfig) -> EvalConfig:
    """The evaluation protocol of the benchmark (fixed seeds; ``eval_steps`` ODE steps; every row at
    ``eval_guidance``, so that the rows' differences are the training's, not the guidance's:
    docs/notes/guidance-reeval.md)."""
    return EvalConfig(num_steps=cfg.eval_steps, batch_size=cfg.eval_batch_size, guidance=cfg.eval_guidance)


def run_stage(spec: StageSpec, seed_dir: Path, cfg: ReproduceConfig, accelerator, seed: int,
              callback: TrainingCallback | None = None) -> dict:
    """The stage's result (``result.json``): train and evaluate it unless that file exists already.

    ``callback`` (:mod:`flowopd.events`, usually :class:`~flowopd.events.Scoped` to ``seed<k>/<stage>``)
    gets the trainer's events; a finished or resumed stage's stored curve is replayed to it first.

    Returns:
        ``{"stage", "kind", "seed", "config", "optimizer_steps", "images", "train_time_s", "eval_time_s",
        "wall_time_s", "metrics": {task: x, "average": x} or None, "curve": [...], "skipped": bool}``.

    Raises:
        ReproduceStopped: the callback's ``should_stop`` ended a trainer (its checkpoint is saved).
        ValueError: the folder holds a stage run with another config.
    """
    folder = seed_dir / spec.name
    path = folder / RESULT_FILE
    if path.is_file():
        result = read_json(path)
        _check_config(spec, result, path)
        replay(callback, result.get("curve", []))
        return {**result, "skipped": True}
    record = train_stage(spec, folder, cfg, accelerator, seed, callback)
    metrics, start = None, time.perf_counter()
    if spec.evaluate:
        if callback is not None:
            callback.on_progress(Progress(spec.name, 0, None, 0.0, message="evaluating"))
        torch.manual_seed(stage_seed(seed, spec.name))
        model = load_model(cfg.model, device=accelerator.device)
        adapter = None if spec.kind == "eval" else folder / ADAPTER_DIR
        metrics = row_metrics(model, adapter, eval_config(cfg), cfg.eval_limit, cfg.eval_merged)
    eval_time = time.perf_counter() - start if spec.evaluate else 0.0
    result = {**record, "eval_time_s": eval_time, "wall_time_s": record["train_time_s"] + eval_time,
              "metrics": metrics}
    write_json(path, result)
    return {**result, "skipped": False}
