"""A supervised teacher: a fresh LoRA fine-tuned with the flow-matching loss on an image set with captions.

The job kohya_ss and fluxgym do (a style or subject LoRA), on the shared model interface: the set
(:func:`flowopd.datasets.load_image_set`) is encoded once into latents and prompt embeddings, then each step
regresses the LoRA's velocity onto ``eps - x`` at ``x_t = (1 - t) x + t eps`` with logit-normal t
(:func:`flowopd.flow_matching.flow_matching_loss`, as pretraining and the cold start's SFT), a fraction
``caption_dropout`` of the captions replaced by the empty prompt so that guidance keeps working. With a
regularization set (``reg_data``: the base's own samples of other prompts) each step adds ``prior_weight``
times the squared distance between the LoRA's and the base's velocity on a noised batch of it: DreamBooth's
prior preservation, with the base's velocity as target, so where the set asks for no change the LoRA is
pulled back to what the base does.

Batches walk the set in a new shuffled order every pass; the order and each step's noise come from seeds of
(run seed, pass or step), so a resume from ``OUT/checkpoint`` (adapter, optimizer, step, RNG states) continues
exactly as an uninterrupted run. The result is an ordinary adapter folder, ``OUT/adapter``, with the run's
config beside it in ``OUT/sft.json`` (its ``kind`` names the algorithm): a teacher a cold start or a
distillation takes like a GRPO teacher's.

Example::

    from flowopd.configs import SFTConfig
    from flowopd.models import load_model
    from flowopd.methods.sft.trainer import train_sft

    result = train_sft(load_model(), SFTConfig(data="data/text"), "runs/sft-text")
    print(result.adapter_dir)  # runs/sft-text/adapter
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ... import metric_names as names
from ...adapters import add_lora, drop_adapter, replace_adapter, save_adapter, trainable_parameters, use_adapter
from ...datasets import load_image_set
from ...events import Sample, TrainingCallback, as_callback, begin
from ...flow_matching import FlowMatchingLoss, clipped_step, flow_matching_loss
from ...layout import ADAPTER_DIR, PROMPT_CACHE_DIR, SFT_FILE
from ...models.base import FlowModel, PromptEmbeds, to_pil
from ...models.prompt_cache import cache_prompts
from ...sampling import generate
from ...training.checkpoint import CheckpointError, find_checkpoint, load_state, save_checkpoint, set_rng_state
from ...training.dist import make_accelerator, prepare_model
from ...training.image_sets import encode_set
from ...training.loop import DivergedError, TrainResult
from ...training.rollout import epoch_seed, lora_init_seed
from .config import SFTConfig

log = logging.getLogger(__name__)
STAGE = "sft"


def batch_indices(step: int, batch_size: int, n: int, seed: int, order: str = "sft-order") -> list[int]:
    """The set rows of optimizer step ``step`` (0-based): positions ``[step * B, (step + 1) * B)`` of the
    endless sequence of passes, each pass a permutation of the ``n`` rows drawn from (seed, pass).

    Example:
        >>> sorted(batch_indices(0, 4, 4, 0)) == [0, 1, 2, 3]
        True
    """
    rows, perms = [], {}
    for pos in range(step * batch_size, (step + 1) * batch_size):
        p = pos // n
        if p not in perms:
            perms[p] = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, p, 0, order)))
        rows.append(int(perms[p][pos % n]))
    return rows


def set_samples(model: FlowModel, cfg: SFTConfig, captions: list[str], files: list[str]) -> list[Sample]:
    """ODE samples of the adapter ``cfg.adapter_name`` on the set's first ``sample_count`` captions (seeds
    ``seed + i``), as the run shows them."""
    captions = captions[:cfg.sample_count]
    seeds = [cfg.seed + i for i in range(len(captions))]
    with torch.no_grad(), use_adapter(model, cfg.adapter_name):
        images = generate(model, captions, seeds=seeds, num_steps=cfg.eval_steps, guidance=cfg.guidance)
    return [Sample(im, c, s, {"file": f}) for im, c, s, f in zip(to_pil(images), captions, seeds, files)]


class SFTTrainer:
    """State and loop of one SFT run; see the module docstring."""

    def __init__(self, model: FlowModel, cfg: SFTConfig, out_dir: str | Path):
        if not isinstance(cfg, SFTConfig):
            raise TypeError(f"train_sft needs an SFTConfig, got {type(cfg).__name__}")
        cfg.require_data()
        self.model, self.cfg, self.out = model, cfg, Path(out_dir)
        self.data = load_image_set(cfg.data, model.image_size, cfg.resize)  # fails on a bad set before any work
        self.reg = load_image_set(cfg.reg_data, model.image_size, cfg.resize) if cfg.reg_data else None
        self.batch = min(cfg.batch_size, len(self.data))  # a set smaller than a batch is one batch
        self.acc = make_accelerator()
        self.step = 0
        self.last_good: tuple[Path, int] | None = None

    def encode(self) -> None:
        """Latents [N, C, h, w] of the set's images, embeddings of its captions and of the empty prompt."""
        self.x, self.cond = encode_set(self.model, self.data)
        if self.reg is not None:
            self.reg_x, self.reg_cond = encode_set(self.model, self.reg)
        with torch.no_grad():
            self.uncond = self.model.uncond_embeds(1)
        if self.model.default_cache_prompts:  # SD3: the encoders leave the GPU; the samples' captions are cached
            cache_prompts(self.model, self.data.captions[:self.cfg.sample_count], self.out / PROMPT_CACHE_DIR)

    def init_adapter(self, resume: bool) -> None:
        """The LoRA (from the checkpoint on resume, else fresh), AdamW, and on resume the step and RNG states."""
        cfg, model = self.cfg, self.model
        ckpt = find_checkpoint(self.out) if resume else None
        state = load_state(ckpt) if ckpt else None
        if state is not None and state.get("stage") != STAGE:
            raise CheckpointError(f"{ckpt} is a {state.get('stage')!r} checkpoint, not an {STAGE!r} one: use another "
                                  "--out folder")
        if ckpt is not None:
            replace_adapter(model, ckpt / ADAPTER_DIR, cfg.adapter_name)
        else:
            drop_adapter(model, cfg.adapter_name)
            add_lora(model, cfg.adapter_name, cfg.lora_rank, cfg.lora_alpha, seed=lora_init_seed(cfg.seed))
        self.params = trainable_parameters(model, cfg.adapter_name)
        prepare_model(model, self.acc, cfg.mixed_precision)  # a half-precision frozen base, an fp32 LoRA
        model.set_gradient_checkpointing(cfg.gradient_checkpointing)
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if state is not None:
            self.opt.load_state_dict(state["optimizer"])
            for group in self.opt.param_groups:  # a resume with a lower lr (the divergence fix) trains at it
                group.update(lr=cfg.lr, weight_decay=cfg.weight_decay)
            self.step = int(state["step"])
            set_rng_state(state["rng"])
            self.last_good = (ckpt, self.step)
            log.info("sft: resumed from %s at step %d", ckpt, self.step)

    def loss(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The flow-matching loss of step ``step``'s batch (captions dropped by ``caption_dropout``), plus
        ``prior_weight`` x the prior loss of a batch of the regularization set as large; and the parts as
        metrics.

        The prior loss is the squared distance of the LoRA's velocity to the base's at the same noised points:
        prior preservation in its distillation form (the base's own velocity as target, not ``eps - x``: no
        variance from the noise draw, and no pull where the base's samples and its velocity field disagree).
        """
        cfg = self.cfg
        data = self.noised_batch(self.x, self.cond, step, "")[0].loss
        if self.reg is None:
            return data, {}
        fm, cond = self.noised_batch(self.reg_x, self.reg_cond, step, "reg-")
        with torch.no_grad(), use_adapter(self.model, None):
            base = self.model.raw_velocity(fm.x_t, fm.t, cond)
        prior = torch.mean((fm.velocity - base) ** 2)
        return data + cfg.prior_weight * prior, {names.SFT_DATA_LOSS: float(data.detach()),
                                                 names.SFT_PRIOR_LOSS: float(prior.detach())}

    def noised_batch(self, x: torch.Tensor, embeds: PromptEmbeds, step: int,
                     tag: str) -> tuple[FlowMatchingLoss, PromptEmbeds]:
        """The LoRA's flow-matching pass on step ``step``'s batch of one set (order and noise seeded by ``tag``,
        captions dropped by ``caption_dropout``), and the prompt embeddings it used."""
        cfg = self.cfg
        idx = batch_indices(step, self.batch, len(x), cfg.seed, f"{tag}sft-order")
        gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, step, 0, f"{tag}sft-noise"))
        cond = embeds.subset(idx)
        drop = (torch.rand(len(idx), generator=gen) < cfg.caption_dropout).to(cond.seq.device)
        if drop.any():
            u = self.uncond.repeat(len(idx))
            cond = PromptEmbeds(torch.where(drop[:, None, None], u.seq, cond.seq),
                                torch.where(drop[:, None], u.pooled, cond.pooled))
        with use_adapter(self.model, cfg.adapter_name):
            return flow_matching_loss(self.model, x[idx], cond, gen), cond

    def samples(self) -> list[Sample]:
        return set_samples(self.model, self.cfg, self.data.captions, self.data.files)

    def save(self) -> Path:
        def write(folder: Path) -> None:
            save_adapter(self.model, self.cfg.adapter_name, folder / ADAPTER_DIR)

        state = {"stage": STAGE, "step": self.step, "epoch": self.epoch, "optimizer": self.opt.state_dict()}
        folder = save_checkpoint(self.out, self.acc, save_adapters=write, state=state, config=self.cfg.to_dict())
        self.last_good = (folder, self.step)
        return folder

    @property
    def epoch(self) -> int:
        """Whole passes over the set done."""
        return self.step * self.batch // len(self.data)

    def run(self, cb: TrainingCallback | None) -> TrainResult:
        cfg = self.cfg
        clock = begin(cb, STAGE, cfg.steps, self.step)
        if cb is not None and self.data.notes:
            cb.on_progress(clock.progress(self.step, "; ".join(self.data.notes)))
        stopped, loss = False, float("nan")
        while self.step < cfg.steps:
            start = time.perf_counter()
            value, parts = self.loss(self.step)
            loss = float(value.detach())
            if not math.isfinite(loss):
                where = (f"the last good checkpoint is {self.last_good[0]} (step {self.last_good[1]})"
                         if self.last_good else "no checkpoint was written yet")
                raise DivergedError(f"sft: the loss became {loss} at step {self.step + 1}; training stopped and "
                                    f"{where}: lower lr (now {cfg.lr})")
            with use_adapter(self.model, cfg.adapter_name):  # a checkpointed backward recomputes the LoRA's forward
                clipped_step(self.opt, self.params, value)
            self.step += 1
            if cb is not None:
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    for sample in self.samples():
                        cb.on_sample(self.step, sample)
                cb.on_metrics(self.step, {names.LOSS: loss, **parts, names.LR: cfg.lr,
                                          names.IMAGES_PER_S: self.batch / (time.perf_counter() - start)})
                cb.on_progress(clock.progress(self.step, f"pass {self.epoch + 1} over {len(self.data)} images"))
                stopped = cb.should_stop()
            if stopped or self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                folder = self.save()
                if cb is not None:
                    cb.on_artifact(self.step, "checkpoint", folder)
            if stopped:
                log.info("sft: stopped at step %d", self.step)
                break
        adapter = save_adapter(self.model, cfg.adapter_name, self.out / ADAPTER_DIR, guidance=cfg.guidance)
        cfg.to_json(self.out / SFT_FILE)
        if cb is not None:
            cb.on_artifact(self.step, "adapter", adapter)
            cb.on_end(STAGE, "stopped" if stopped else "finished")
        return TrainResult(adapter, self.last_good[0] if self.last_good else None, self.step, self.epoch, stopped,
                           {names.LOSS: loss})


def train_sft(model: FlowModel, cfg: SFTConfig, out_dir: str | Path, *,
              callback: TrainingCallback | Callable[[dict], None] | None = None,
              should_stop: Callable[[], bool] | None = None, resume: bool = True, accelerator: Any = None
              ) -> TrainResult:
    """Fine-tune a fresh LoRA ``cfg.adapter_name`` on the image set ``cfg.data``; see the module docstring.

    Args:
        model: the frozen base (tiny or SD3) on its device; the adapter is (re)created on it and holds the
            trained weights on return.
        out_dir: ``OUT/checkpoint`` (resumable), ``OUT/adapter`` (the teacher) and ``OUT/sft.json``.
        callback: :mod:`flowopd.events`, or a function of one dict per step: ``loss``, ``lr``, ``images_per_s``
            after every step, samples every ``sample_every`` steps, ``checkpoint`` and ``adapter`` artifacts.
        should_stop: polled after every step (as the callback's); True saves a checkpoint and returns.
        resume: continue from ``OUT/checkpoint`` when there is one.
        accelerator: taken for the trainers' one signature (:class:`flowopd.methods.Method`); SFT trains in one
            process, on the model's device.

    Raises:
        ValueError: ``data`` is empty or not a folder.
        flowopd.datasets.DatasetError: the image set cannot be read (the message names the file and the fix).
        DivergedError: the loss became non-finite.
    """
    trainer = SFTTrainer(model, cfg, out_dir)
    trainer.init_adapter(resume)
    trainer.encode()
    return trainer.run(as_callback(callback, should_stop))


def preview(model: FlowModel, cfg: SFTConfig) -> list[Sample]:
    """*Sample now* of a running SFT teacher: :func:`set_samples` on its image set's captions."""
    data = load_image_set(cfg.data, model.image_size, cfg.resize)
    return set_samples(model, cfg, data.captions, data.files)
