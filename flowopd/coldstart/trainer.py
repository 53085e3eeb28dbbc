"""Cold start (docs/method.md, "Cold start"): the student's first LoRA, written to ``OUT/adapter``.

* ``merge``: exact merge of the teachers' weight deltas (``flowopd.coldstart.merge_adapters``, ``cat``, or
  ``svd`` truncated to ``svd_rank``), weights ``cfg.merge_weights()``, or with ``merge_weighting`` ``gain``
  in proportion to each teacher's measured gain (:mod:`flowopd.coldstart.gains`; reported as the metrics
  ``gain/<task>`` and ``merge_weight/<task>``);
* ``merge-avg``: the released code's element-wise average of the A's and of the B's (``avg``);
* ``sft`` (our choice; the paper ships no script): for each task, ODE samples of its teacher on train prompts
  (optionally the best of ``sft_best_of`` per prompt by the task reward), then a flow-matching fine-tune of a
  fresh student LoRA on them, ``|| v_student(x_t, t, c) - (eps - x) ||^2`` with logit-normal t, plus
  ``sft_beta_base`` times the MSE to the base model's velocity;
* ``none``: a fresh LoRA (B = 0: the student starts as the base).

The function leaves the model as it found it: the teachers and the student it added are deleted again.
It runs in one process on the model's device (a merge takes milliseconds; SFT is short).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .. import metric_names as names
from ..adapters import (
    adapter_guidance,
    add_lora,
    drop_adapter,
    replace_adapter,
    save_adapter,
    trainable_parameters,
    use_adapter,
)
from ..config.fields import task_reward
from ..events import Clock, StopRequested, TrainingCallback, as_callback, begin
from ..flow_matching import clipped_step, flow_matching_loss
from ..layout import COLDSTART_FILE, adapter_dir
from ..models.base import FlowModel, PromptEmbeds
from ..models.prompt_cache import cache_prompts
from ..rewards import get_reward
from ..sampling import sample
from ..training.dist import cast_base
from ..training.rollout import epoch_seed, lora_init_seed, sample_groups
from ..world.splits import use_prompt_sets
from .config import ColdStartConfig
from .gains import gain_weights, teacher_gains
from .merge import merge_adapters

log = logging.getLogger(__name__)
STUDENT = "student"
MERGE_COMBINATION = {"merge": None, "merge-avg": "avg"}  # None: cfg.combination (cat | svd)


def _teacher_samples(model: FlowModel, cfg: ColdStartConfig, task: str, teacher: str, guidance: float,
                     ) -> tuple[torch.Tensor, PromptEmbeds]:
    """Clean ODE samples of ``teacher`` at its ``guidance`` on ``task``'s train prompts: (latents [n, C, H, W],
    their embeddings).

    With ``sft_best_of`` k > 1 every prompt gets k seeds and keeps the sample its task reward scores best.
    """
    k, n = cfg.sft_best_of, cfg.sft_samples_per_task
    rng = random.Random(epoch_seed(cfg.seed, 0, 0, f"sft-{task}"))
    records = sample_groups({task: 1.0}, n, k, rng)
    seeds = [rng.randrange(2**31) for _ in records]
    latents, embeds = [], []
    with torch.no_grad(), use_adapter(model, teacher):
        for start in range(0, len(records), cfg.sft_batch_size):
            chunk = records[start:start + cfg.sft_batch_size]
            cond = model.encode_prompts([r["prompt"] for r in chunk])
            traj = sample(model, cond, seeds=seeds[start:start + len(chunk)], num_steps=cfg.eval_steps,
                          guidance=guidance)
            latents.append(traj.final)
            embeds.append(cond)
    x = torch.cat(latents)
    cond = PromptEmbeds(torch.cat([e.seq for e in embeds]), torch.cat([e.pooled for e in embeds]))
    if k > 1:
        reward = get_reward(task_reward(cfg.task_rewards, task))
        scores = torch.tensor(reward(model.decode(x).cpu(), [r["prompt"] for r in records], records))
        best = (scores.view(n, k).argmax(1) + torch.arange(n) * k).tolist()
        x, cond = x[best], cond.subset(best)
    return x, cond


def _sft(model: FlowModel, cfg: ColdStartConfig, teachers: dict[str, tuple[str, float]],
         callback: TrainingCallback | None,
         clock: Clock) -> None:
    """Flow-matching fine-tune of a fresh ``student`` LoRA on the teachers' samples (see the module docstring)."""
    data = []
    for task, (name, guidance) in teachers.items():
        if callback is not None:
            callback.on_progress(clock.progress(0, f"sampling teacher {task} ({cfg.sft_samples_per_task} images)"))
        data.append(_teacher_samples(model, cfg, task, name, guidance))
    x_all = torch.cat([x for x, _ in data])
    cond_all = PromptEmbeds(torch.cat([c.seq for _, c in data]), torch.cat([c.pooled for _, c in data]))
    if model.default_cache_prompts:  # SD3: the text encoders leave the GPU while the student trains
        cache_prompts(model, [])
    add_lora(model, STUDENT, cfg.lora_rank, cfg.lora_alpha, seed=lora_init_seed(cfg.seed))
    cast_base(model, cfg.mixed_precision)  # a half-precision frozen base, an fp32 LoRA
    model.set_gradient_checkpointing(cfg.gradient_checkpointing)
    params = trainable_parameters(model, STUDENT)
    opt = torch.optim.AdamW(params, lr=cfg.sft_lr)
    gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, 0, 0, "sft-train"))
    for step in range(1, cfg.sft_steps + 1):
        start = time.perf_counter()
        idx = torch.randint(len(x_all), (min(cfg.sft_batch_size, len(x_all)),), generator=gen).tolist()
        cond = cond_all.subset(idx)
        with use_adapter(model, STUDENT):  # t logit-normal(0, 1), as SD3
            fm = flow_matching_loss(model, x_all[idx], cond, gen)
        loss = fm.loss
        if cfg.sft_beta_base > 0:
            with torch.no_grad(), use_adapter(model, None):
                v_base = model.raw_velocity(fm.x_t, fm.t, cond)
            loss = loss + cfg.sft_beta_base * torch.mean((fm.velocity - v_base) ** 2)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"cold-start SFT loss became {loss.item()} at step {step}: lower sft_lr "
                                     f"(now {cfg.sft_lr}); nothing was written")
        with use_adapter(model, STUDENT):  # a checkpointed backward recomputes the student's forward
            clipped_step(opt, params, loss)
        if callback is not None:
            callback.on_metrics(step, {names.LOSS: loss.item(),
                                       names.IMAGES_PER_S: len(idx) / (time.perf_counter() - start)})
            callback.on_progress(clock.progress(step))
            if step < cfg.sft_steps and callback.should_stop():
                raise StopRequested(f"cold-start SFT stopped at step {step} of {cfg.sft_steps}; nothing was written")


def _merge_weights(model: FlowModel, cfg: ColdStartConfig, teachers: dict[str, str],
                   callback: TrainingCallback | None, clock: Clock) -> dict[str, float]:
    """The merge's task -> weight: given, equal, or measured (``merge_weighting`` ``gain``)."""
    if cfg.weights or cfg.merge_weighting == "equal":
        return cfg.merge_weights()
    if callback is not None:
        callback.on_progress(clock.progress(0, f"measuring the teachers' gains ({cfg.gain_prompts} prompts each)"))
    previous = use_prompt_sets(cfg.prompt_sets)
    try:
        gains = teacher_gains(model, teachers, prompts=cfg.gain_prompts, steps=cfg.eval_steps, guidance=cfg.guidance,
                              seed=cfg.seed, task_rewards=cfg.task_rewards)
    finally:
        use_prompt_sets(previous)
    weights = gain_weights(gains)
    log.info("cold start: merge weights %s", ", ".join(f"{t} {w:.2f}" for t, w in weights.items()))
    if callback is not None:
        callback.on_metrics(1, {**{f"gain/{t}": g for t, g in gains.items()},
                                **{f"merge_weight/{t}": w for t, w in weights.items()}})
    return weights


def run_coldstart(model: FlowModel, cfg: ColdStartConfig, out_dir: str | Path, *,
                  callback: TrainingCallback | Callable[[dict], None] | None = None) -> Path:
    """Build the student's initial adapter by ``cfg.mode`` and save it to ``OUT/adapter``; returns that folder.

    ``callback`` (:mod:`flowopd.events`, or a function of one dict per step) sees a stage of ``sft_steps``
    steps (``sft``) or one: ``loss`` and ``images_per_s`` after every SFT step, whose ``should_stop`` it
    polls, and the ``adapter`` artifact at the end.

    Raises:
        StopRequested: the callback asked an SFT cold start to stop (nothing is written).
        flowopd.adapters.AdapterError: a teacher folder is not an adapter of this base model, or (merge-avg)
            the teachers' ranks differ.
    """
    if not isinstance(cfg, ColdStartConfig):
        raise TypeError(f"run_coldstart needs a ColdStartConfig, got {type(cfg).__name__}")
    out = adapter_dir(out_dir)
    cb = as_callback(callback)
    total = cfg.sft_steps if cfg.mode == "sft" else 1
    clock = begin(cb, "coldstart", total)
    added: list[str] = []
    try:
        teachers = {}
        for task, folder in cfg.teachers.items():
            teachers[task] = f"teacher_{task}"
            replace_adapter(model, folder, teachers[task], field=f"teachers[{task!r}]")
            added.append(teachers[task])
        drop_adapter(model, STUDENT)
        added.append(STUDENT)
        if cfg.mode in MERGE_COMBINATION:
            weights = _merge_weights(model, cfg, teachers, cb, clock)
            merge_adapters(model, list(teachers.values()), [weights[t] for t in teachers], STUDENT,
                           mode=MERGE_COMBINATION[cfg.mode] or cfg.combination, rank=cfg.svd_rank)
        elif cfg.mode == "sft":  # each teacher sampled at its own guidance (its adapter.json), else cfg.guidance
            guided = {t: (n, adapter_guidance(cfg.teachers[t], cfg.guidance)) for t, n in teachers.items()}
            previous = use_prompt_sets(cfg.prompt_sets)  # the teachers draw the user's prompts where given
            try:
                _sft(model, cfg, guided, cb, clock)
            finally:
                use_prompt_sets(previous)
        else:
            add_lora(model, STUDENT, cfg.lora_rank, cfg.lora_alpha, seed=lora_init_seed(cfg.seed))
        save_adapter(model, STUDENT, out, guidance=cfg.guidance)
        (Path(out_dir) / COLDSTART_FILE).write_text(cfg.to_json())
    finally:
        for name in added:
            drop_adapter(model, name)
    log.info("cold start %s: student adapter written to %s", cfg.mode, out)
    if cb is not None:
        cb.on_progress(clock.progress(total, "adapter written"))
        cb.on_artifact(total, "adapter", out)
        cb.on_end("coldstart", "finished")
    return out
