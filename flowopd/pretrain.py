"""Pretraining of the built-in tiny model on an endless stream of rendered scenes and their captions.

Rectified-flow loss ``|| v(x_t, t, c) - (eps - x) ||^2`` with logit-normal t (as SD3), caption dropout for
classifier-free guidance, AdamW with warm-up and cosine decay, and an EMA of the weights (the EMA is
what gets saved as the model). Prompts come from every task's generator, minus the held-out test
prompts, so the test splits measure generalisation.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from . import metric_names as names
from .config.pretrain import PretrainConfig
from .events import TrainingCallback, as_callback, begin
from .flow_matching import clipped_step, flow_matching_loss
from .layout import PRETRAIN_CONFIG_FILE, PRETRAIN_STATE_FILE
from .models.tiny import TinyFlowModel
from .models.tiny_config import TinyConfig  # noqa: F401 (re-exported; torch-free module)
from .tokenizer import PromptTokenizer
from .world.prompts import TASKS, sample_record, scene_for
from .world.scene import render_array
from .world.splits import is_held_out, load_prompts

log = logging.getLogger(__name__)
STATE_FILE = PRETRAIN_STATE_FILE  # the name the store's pretrain stage reads


def build_tokenizer(max_length: int) -> PromptTokenizer:
    """The vocabulary: every word of every task's train and test prompts, plus the empty prompt."""
    prompts = [r["prompt"] for t in TASKS for s in ("train", "test") for r in load_prompts(t, s)]
    return PromptTokenizer.from_prompts(prompts, max_length)


def scene_batch(rng: random.Random, cfg: PretrainConfig) -> tuple[torch.Tensor, list[str]]:
    """A batch of rendered training scenes [B, 3, H, W] in [0, 1] and their captions."""
    tasks, weights = zip(*cfg.task_weights.items())
    records = []
    while len(records) < cfg.batch_size:
        record = sample_record(rng.choices(tasks, weights)[0], rng)
        if not is_held_out(record):
            records.append(record)
    images = render_array([scene_for(r, rng) for r in records], cfg.model.image_size)
    prompts = ["" if rng.random() < cfg.caption_dropout else r["prompt"] for r in records]
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, prompts


def scene_loss(model: TinyFlowModel, images: torch.Tensor, prompts: list[str], generator: torch.Generator,
               logit_mean: float = 0.0, logit_std: float = 1.0) -> torch.Tensor:
    """The flow-matching loss (:func:`flowopd.flow_matching.flow_matching_loss`) of rendered scenes
    [B, 3, H, W] in [0, 1] and their captions; a scalar with gradient."""
    x = model.encode_images(images.to(model.device))
    return flow_matching_loss(model, x, model.encode_prompts(prompts), generator, logit_mean, logit_std).loss


def _load_initial_weights(model: TinyFlowModel, params: list, ema: list, cfg: PretrainConfig) -> None:
    """Start from the saved model ``cfg.init_from``: same architecture and vocabulary, or a clear error."""
    source = TinyFlowModel.load(cfg.init_from)
    if source.config != cfg.model:
        raise ValueError(f"init_from {cfg.init_from!r} has model config {source.config}, but the pretrain "
                         f"config asks for {cfg.model}: copy its 'model' section into the pretrain config")
    if source.tokenizer.vocab != model.tokenizer.vocab:
        raise ValueError(f"init_from {cfg.init_from!r} was trained with another vocabulary than the current "
                         "prompt splits give: pretrain from scratch (init_from \"\")")
    source_params = [p for m in source.modules().values() for p in m.parameters()]
    with torch.no_grad():
        for p, e, s in zip(params, ema, source_params, strict=True):
            p.copy_(s.to(p.dtype))
            e.copy_(s.to(e.dtype))
    log.info("pretraining starts from the weights of %s", cfg.init_from)


def _lr_factor(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def pretrain(cfg: PretrainConfig, out_dir: str | Path, *,
             callback: TrainingCallback | Callable[[dict], None] | None = None, resume: bool = True,
             should_stop: Callable[[], bool] | None = None, device: str | None = None) -> TinyFlowModel:
    """Train from ``cfg.seed``; write the EMA model to ``out_dir`` every ``checkpoint_every`` steps.

    ``callback`` (:mod:`flowopd.events`, or a function of one dict per step) gets the metrics ``loss``,
    ``lr`` and ``images_per_s`` after every step, its progress, and a ``checkpoint`` artifact (``out_dir``)
    after every save; ``should_stop`` (the callback's, or the function given) is polled after every step
    and saves before it stops. With ``resume`` a
    ``train_state.pt`` in ``out_dir`` continues the step count, optimizer and RNG states exactly.
    ``device`` defaults to CUDA when available; scenes are always rendered on the CPU.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = TinyFlowModel(cfg.model, build_tokenizer(cfg.model.max_length)).to(device)
    params = [p for m in model.modules().values() for p in m.parameters()]
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    rng, gen, step = random.Random(cfg.seed), torch.Generator().manual_seed(cfg.seed), 0
    state_path = out / STATE_FILE
    if cfg.init_from:
        _load_initial_weights(model, params, ema, cfg)
    if resume and state_path.is_file():
        state = torch.load(state_path, weights_only=False, map_location=device)
        for p, v in zip(params, state["params"]):
            p.data.copy_(v)
        for e, v in zip(ema, state["ema"]):
            e.copy_(v)
        opt.load_state_dict(state["optimizer"])
        rng.setstate(state["rng"])
        gen.set_state(state["generator"].cpu())
        step = state["step"]
        log.info("resumed pretraining at step %d", step)

    def save() -> None:
        ema_model = copy.copy(model)
        live = [p.detach().clone() for p in params]
        for p, e in zip(params, ema):
            p.data.copy_(e)
        ema_model.save(out)
        if cfg.keep_checkpoints:
            ema_model.save(out / f"ema_step{step:06d}")
        for p, v in zip(params, live):
            p.data.copy_(v)
        # Write then rename: a process killed mid-save must not leave a truncated checkpoint behind.
        partial = state_path.with_suffix(".tmp")
        torch.save({"params": live, "ema": ema, "optimizer": opt.state_dict(), "rng": rng.getstate(),
                    "generator": gen.get_state(), "step": step, "config": asdict(cfg)}, partial)
        os.replace(partial, state_path)
        (out / PRETRAIN_CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=1))

    cb = as_callback(callback, should_stop)
    clock = begin(cb, "pretrain", cfg.steps, step)
    t_last = time.perf_counter()
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = cfg.lr * _lr_factor(step, cfg)
        images, prompts = scene_batch(rng, cfg)
        loss = scene_loss(model, images, prompts, gen, cfg.logit_mean, cfg.logit_std)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining loss became {loss.item()} at step {step}: lower lr "
                                     f"(now {cfg.lr}); the last good checkpoint is in {out}")
        clipped_step(opt, params, loss)
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)
        step += 1
        now = time.perf_counter()
        stop = False
        if cb is not None:
            cb.on_metrics(step, {names.LOSS: loss.item(), names.LR: opt.param_groups[0]["lr"],
                                 names.IMAGES_PER_S: cfg.batch_size / max(now - t_last, 1e-9)})
            cb.on_progress(clock.progress(step))
            stop = cb.should_stop()
        t_last = now
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop:
            save()
            if cb is not None:
                cb.on_artifact(step, "checkpoint", out)
            if stop:
                break
    for p, e in zip(params, ema):
        p.data.copy_(e)
    if cb is not None:
        cb.on_end("pretrain", "stopped" if step < cfg.steps else "finished")
    return model
