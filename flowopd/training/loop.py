"""The on-policy training loop GRPO and OPD share: student adapter, optimizer, EMA, epochs, checkpoints.

:class:`RLTrainer` owns everything but the stage's epoch (:meth:`RLTrainer.train_epoch`, written by the
subclass as rollout -> scoring -> loss). One *step* is one optimizer step; an epoch is one rollout of
``batch_size`` samples per process followed by ``optimizer_steps_per_epoch`` steps, each accumulating its
share of the micro-batches over the trained denoising steps.

The callback (main process only) speaks :mod:`flowopd.events`: ``on_begin``; after every epoch its sample
images (every ``sample_every`` epochs), one ``on_metrics`` at the epoch's last optimizer step with the
metrics gathered over processes (names in :mod:`flowopd.metric_names`), ``on_progress`` (also during the
rollout and the optimizer steps), ``should_stop`` after every epoch and, in a one-process run, ``stop_now``
before every optimizer step (a stop there checkpoints that step with the epoch's start; a resume draws the
epoch's rollout again from that start and skips the steps taken, so it stays exact); ``on_artifact`` for each
checkpoint and the final adapter; ``on_end``. A plain function gets one flat dict per epoch
(:class:`flowopd.events.FunctionCallback`)::

    step, epoch                  int: optimizer steps and epochs done
    lr, loss, grad_norm          float; loss = mean over (micro-batch, trained step j)
    images_per_s, step_time_s    images sampled per second of the epoch (all processes); epoch time / steps
    trained_fraction             share of the samples trained on (groups masked by mask_zero_std drop out)
    reward/<name>                mean of each reward where it applies (GRPO: its task's prompts; OPD: reward/<task>)
    reward/<name>/<task>         for a reward that scores several tasks; reward/total: the weighted reward
    GRPO: policy_loss, ratio, clip_frac, kl/base, kl/base/step_<j>, reward_std, advantage_abs
    OPD:  kl/teacher, kl/teacher/step_<j>, kl/teacher/<task>, kl/anchor, kl/anchor/step_<j> (beta_mar > 0)
    samples                      every sample_every epochs: [{"image": PIL, "prompt", "seed", "task"}]

Steps only grow, so after a resume from step k a store drops its rows past k and the series continues
without duplicates.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from accelerate import Accelerator

from ..adapters import add_lora, drop_adapter, replace_adapter, save_adapter, trainable_parameters, use_adapter
from ..events import Sample, TrainingCallback, as_callback, begin
from ..layout import ADAPTER_DIR, CONFIG_FILE, EMA_DIR, PROMPT_CACHE_DIR
from ..models.base import FlowModel, PromptEmbeds, to_pil
from ..models.prompt_cache import cache_prompts
from ..sampling import SDEStep, generate, sde_step
from ..world.splits import load_prompts, use_prompt_sets
from .checkpoint import CheckpointError, find_checkpoint, load_state, save_checkpoint, set_rng_state
from .dist import any_process, make_accelerator, prepare_model
from .ema import LoraEMA
from .resume import StopInEpoch, StopResume
from .rollout import Rollout, epoch_seed, lora_init_seed, rollout, sample_groups
from .steps import DivergedError, OptimizerSteps

log = logging.getLogger(__name__)
Callback = Callable[[dict[str, Any]], None]
SAMPLES_PER_TASK = 2


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Learning-rate multiplier of optimizer step ``step`` (0-based): a linear warm-up over ``warmup`` steps,
    then ``schedule``: 1 (constant), or a cosine or linear decay from 1 that would reach 0 at step ``total``
    (one past the last step, so no step is wasted at lr 0).

    Example:
        >>> [round(lr_factor(s, 2, 6, "linear"), 2) for s in range(6)]
        [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress


@dataclass
class TrainResult:
    """What a finished (or stopped) run leaves: ``adapter_dir`` holds the student to evaluate (EMA weights
    when EMA is on; the model's student adapter holds the same weights on return)."""

    adapter_dir: Path
    checkpoint_dir: Path | None
    step: int
    epoch: int
    stopped: bool
    metrics: dict[str, float] = field(default_factory=dict)  # the last epoch's


class RLTrainer(OptimizerSteps, StopResume):
    """Shared state and loop of the on-policy trainers (see the module docstring)."""

    stage: ClassVar[str] = ""

    def __init__(self, model: FlowModel, cfg: Any, out_dir: str | Path, accelerator: Accelerator | None = None):
        self.model, self.cfg, self.out = model, cfg, Path(out_dir)
        self.previous_sets = use_prompt_sets(cfg.prompt_sets)  # put back when run() ends
        self.acc = make_accelerator(accelerator)
        self.name: str = cfg.adapter_name
        self.step = self.epoch = 0
        self.last_good: tuple[Path, int] | None = None
        self.out.mkdir(parents=True, exist_ok=True)
        self.callback: TrainingCallback | None = None  # set by run() on the main process
        self.clock = None
        self.epoch_start: dict | None = None  # the epoch's snapshot while a stop may land inside it
        self.partial: dict | None = None  # a checkpoint's unfinished epoch (a stop inside it), being redone
        self.skip: dict | None = None  # while redoing it: {"chunks", "mid" (the stop's state), "sums"}

    # --- setup -------------------------------------------------------------------------------------------

    def new_student(self, init: str | Path | None) -> None:
        """The student adapter before its first step: the ``init`` folder's, else a fresh LoRA."""
        if init is not None:
            replace_adapter(self.model, init, self.name, field="init")
        else:
            drop_adapter(self.model, self.name)
            add_lora(self.model, self.name, self.cfg.lora_rank, self.cfg.lora_alpha, seed=lora_init_seed(self.cfg.seed))

    def student_parameters(self) -> list[torch.nn.Parameter]:
        """The student's trained parameters, made the model's only trainable ones."""
        return trainable_parameters(self.model, self.name)

    def init_student(self, init: str | Path | None, resume: bool) -> None:
        """Student adapter from the checkpoint (resume), else from ``init``, else a fresh LoRA; then the
        optimizer, learning-rate scheduler, EMA and, on resume, their states, the step and the RNG states."""
        cfg, model = self.cfg, self.model
        ckpt = find_checkpoint(self.out) if resume else None
        state = load_state(ckpt, self.acc.process_index) if ckpt else None
        if state is not None and state.get("stage") != self.stage:
            raise CheckpointError(f"{ckpt} is a {state.get('stage')!r} checkpoint, not a {self.stage!r} one: use "
                                  "another --out folder")
        if ckpt is not None:
            replace_adapter(model, ckpt / ADAPTER_DIR, self.name)
        else:
            self.new_student(init)
        self.params = self.student_parameters()
        prepare_model(model, self.acc, cfg.mixed_precision)
        model.set_gradient_checkpointing(cfg.gradient_checkpointing)
        cache = model.default_cache_prompts if cfg.cache_prompt_embeddings is None else cfg.cache_prompt_embeddings
        if cache:  # after prepare_model, which places every module on the accelerator
            cache_prompts(model, self.run_prompts(), self.out / PROMPT_CACHE_DIR)
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                                     weight_decay=cfg.weight_decay)
        total = cfg.epochs * cfg.optimizer_steps_per_epoch
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, cfg.warmup_steps, total, cfg.lr_schedule))
        self.last_lr = self.opt.param_groups[0]["lr"]
        self.ema = LoraEMA(self.params, cfg.ema_decay, cfg.ema_every, cfg.ema_warmup) if cfg.ema else None
        if state is not None:
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self._apply_optimizer_config()
            if self.ema is not None and state.get("ema"):
                self.ema.load_state_dict(state["ema"])
            self.step, self.epoch = int(state["step"]), int(state["epoch"])
            self.load_extra_state(state.get("extra") or {})
            set_rng_state(state["rng"])
            self.partial = state.get("partial")
            if self.partial is not None and self.acc.num_processes > 1:
                raise CheckpointError(f"{ckpt} was saved inside an epoch by a one-process run (a stop): resume it "
                                      "with one process; its epoch's rollout is drawn again from one process's seed")
            self.last_good = (ckpt, self.step)
            log.info("%s: resumed from %s at step %d (epoch %d)", self.stage, ckpt, self.step, self.epoch)
            saved = json.loads((ckpt / CONFIG_FILE).read_text()) if (ckpt / CONFIG_FILE).is_file() else {}
            changed = sorted(k for k, v in cfg.to_dict().items() if k != "epochs" and saved.get(k, v) != v)
            if changed:  # allowed (e.g. a lower lr after a divergence), but worth a line in the log
                log.warning("%s: resuming with changed config fields %s", self.stage, changed)

    def _apply_optimizer_config(self) -> None:
        """After loading a checkpoint's optimizer and scheduler states, which carry the hyper-parameters they
        were saved with, put the config's back: a resume with a lower ``lr`` (the fix a divergence message
        advises) must train at that rate. The moments and the schedule's position stay the checkpoint's."""
        cfg = self.cfg
        self.sched.base_lrs = [cfg.lr] * len(self.opt.param_groups)
        lr = cfg.lr * self.sched.lr_lambdas[0](self.sched.last_epoch)
        for group in self.opt.param_groups:
            group.update(initial_lr=cfg.lr, lr=lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.adam_betas),
                         eps=cfg.adam_eps)
        self.last_lr = self.opt.param_groups[0]["lr"]

    # --- the pieces an epoch uses ------------------------------------------------------------------------

    def make_rollout(self, epoch: int, task_weights: Mapping[str, float]) -> Rollout:
        """This process's on-policy rollout of ``epoch``: prompt groups, seeds and SDE noise from the epoch seed."""
        cfg, rank = self.cfg, self.acc.process_index
        rng = random.Random(epoch_seed(cfg.seed, epoch, rank, "prompts"))
        records = sample_groups(task_weights, cfg.batch_size // cfg.group_size, cfg.group_size, rng)
        seeds = [rng.randrange(2**31) for _ in records]
        if cfg.shared_group_noise:  # a group is group_size contiguous records (sample_groups)
            seeds = [seeds[i - i % cfg.group_size] for i in range(len(seeds))]
        noise = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, rank, "noise"))
        sde = self.sde_steps(epoch) if cfg.sde_window or cfg.clean_untrained_steps else None
        self.note(f"epoch {epoch + 1}/{cfg.epochs}: sampling {len(records)} images")
        return rollout(self.model, self.name, records, seeds, num_steps=cfg.num_steps, guidance=cfg.guidance,
                       noise_level=cfg.noise_level, generator=noise, chunk=cfg.train_batch_size, sde_steps=sde,
                       antithetic=cfg.antithetic_noise)

    def sde_steps(self, epoch: int) -> list[int]:
        """The denoising steps that draw SDE noise and train in ``epoch``: every trained step, or the config's
        ``sde_window`` consecutive ones from a start drawn from the run's seed and the epoch (the same on every
        process, so that a resume and every process's groups share it).

        A step outside them is an ODE step (log-prob 0) and must not train: its stored transition is no sample.
        """
        trained, k = self.cfg.trained_steps, self.cfg.sde_window
        if not k:
            return list(range(trained))
        start = random.Random(epoch_seed(self.cfg.seed, epoch, 0, "sde_window")).randrange(trained - k + 1)
        return list(range(start, start + k))

    def transition(self, adapter: str | None, roll: Rollout, idx: list[int], j: int,
                   guidance: float | None = None) -> SDEStep:
        """Step ``j`` of rows ``idx`` under ``adapter`` (None: base) at ``guidance`` (None: the config's),
        scored at the stored next latents.

        Gradients flow when the caller enables them and ``adapter`` is the student.
        """
        guidance = self.cfg.guidance if guidance is None else guidance
        x, (cond, uncond) = roll.latents[idx, j], roll.embeds(idx)
        if uncond is None and guidance != 1.0:  # rolled out CFG-free, queried guided
            uncond = self.uncond(len(idx))
        with use_adapter(self.model, adapter):
            v = self.model.velocity(x, roll.sigmas[j], cond, uncond, guidance)
        return sde_step(v, x, roll.sigmas[j], roll.sigmas[j + 1], self.cfg.noise_level, sigma_max=roll.sigma_max,
                        prev_sample=roll.latents[idx, j + 1])

    def uncond(self, n: int) -> PromptEmbeds:
        """``n`` embeddings of the empty prompt, encoded once per trainer (a CFG-free rollout has none, and a
        guided query of it needs them at every step)."""
        if getattr(self, "_empty", None) is None:
            with torch.no_grad():
                self._empty = self.model.uncond_embeds(1)
        return self._empty.repeat(n)

    # --- the loop --------------------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One rollout and its optimizer steps; returns the epoch's metrics (gathered over processes)."""
        raise NotImplementedError

    def run_prompts(self) -> list[str]:
        """The prompts this run encodes: its tasks' training prompts and the sample images' test prompts."""
        tasks = [t for t, w in self.cfg.prompt_tasks.items() if w > 0]
        return ([r["prompt"] for t in tasks for r in load_prompts(t, "train")]
                + [r["prompt"] for t in self.sample_tasks() for r in load_prompts(t, "test")[:SAMPLES_PER_TASK]])

    def sample_tasks(self) -> list[str]:
        """Tasks whose test prompts the callback's sample images show."""
        raise NotImplementedError

    def note(self, message: str, fraction: float = 0.0) -> None:
        """Progress inside an epoch (the rollout, each optimizer step), so a watcher sees a long epoch move."""
        if self.callback is not None and self.clock is not None:
            self.callback.on_progress(self.clock.progress(self.step, message, fraction))

    def run(self, callback: TrainingCallback | Callback | None = None,
            should_stop: Callable[[], bool] | None = None) -> TrainResult:
        """Epochs until ``cfg.epochs`` or a stop request (checked after each epoch, and a ``stop_now`` before each
        optimizer step; a checkpoint is saved where it lands).

        ``callback`` is a :class:`~flowopd.events.TrainingCallback` or a function of the flat metrics dict;
        ``should_stop``, a function, is polled beside the callback's own ``should_stop``.
        """
        cfg, main = self.cfg, self.acc.is_main_process
        cb = self.callback = as_callback(callback, should_stop) if main else None
        self.clock = begin(cb, self.stage, cfg.epochs * cfg.optimizer_steps_per_epoch, self.step)
        try:
            result = self._epochs(cb)
        except BaseException as err:
            if cb is not None:
                cb.on_end(self.stage, "stopped" if isinstance(err, KeyboardInterrupt) else "failed")
            raise
        finally:
            use_prompt_sets(self.previous_sets)  # this process's prompts are the world's (or the caller's) again
        if cb is not None:
            if not result.stopped:
                cb.on_artifact(result.step, "adapter", result.adapter_dir)
            cb.on_end(self.stage, "stopped" if result.stopped else "finished")
        return result

    def _epochs(self, cb: TrainingCallback | None) -> TrainResult:
        cfg, stopped, metrics = self.cfg, False, {}
        while self.epoch < cfg.epochs:
            start = time.perf_counter()
            if self.partial is not None and self.partial["epoch"] == self.epoch:
                self.begin_partial_epoch()
            # One process: a stop may land between optimizer steps (poll_stop); the epoch's start is kept for it.
            self.epoch_start = self.snapshot() if cb is not None and self.acc.num_processes == 1 else None
            try:
                metrics = self.train_epoch(self.epoch)
            except StopInEpoch as stop:
                stopped = True
                if stop.chunks_done == 0:  # no step taken yet: the checkpoint is the epoch's start (its RNG)
                    self.restore(self.epoch_start)
                else:
                    self.partial = self.partial_state(stop)
                log.info("%s: stop inside epoch %d after %d of its optimizer steps (step %d)", self.stage,
                         self.epoch + 1, stop.chunks_done, self.step)
            except DivergedError:
                raise
            except FloatingPointError as err:  # e.g. a rollout of exploded weights: name the step and checkpoint
                raise self.diverged(str(err).split(":")[0]) from None
            finally:
                self.epoch_start = self.skip = None
            if not stopped:
                self.epoch += 1
                elapsed = time.perf_counter() - start
                payload: dict[str, Any] = {"epoch": self.epoch, **metrics,
                                           "lr": self.last_lr,
                                           "images_per_s": cfg.batch_size * self.acc.num_processes / elapsed,
                                           "step_time_s": elapsed / cfg.optimizer_steps_per_epoch}
                log.info("%s epoch %d step %d: loss %.4g, %.1f images/s", self.stage, self.epoch, self.step,
                         metrics.get("loss", float("nan")), payload["images_per_s"])
                if cb is not None:
                    if cfg.sample_every and self.epoch % cfg.sample_every == 0:
                        for sample in self.sample_images():
                            cb.on_sample(self.step, sample)
                    cb.on_metrics(self.step, payload)
                    cb.on_progress(self.clock.progress(self.step, f"epoch {self.epoch}/{cfg.epochs}"))
                stopped = any_process(self.acc, bool(cb is not None and cb.should_stop()))
            if stopped or self.epoch % cfg.checkpoint_every == 0 or self.epoch == cfg.epochs:
                self.save()
                if cb is not None:
                    cb.on_artifact(self.step, "checkpoint", self.last_good[0])
            if stopped:
                log.info("%s: stopped at step %d", self.stage, self.step)
                break
        return TrainResult(self.export(), self.last_good[0] if self.last_good else None, self.step, self.epoch,
                           stopped, {k: v for k, v in metrics.items() if isinstance(v, float)})

    def sample_images(self) -> list[Sample]:
        """ODE samples of the first test prompts of each task (fixed seeds), with the evaluated weights."""
        records = [r for t in self.sample_tasks() for r in load_prompts(t, "test")[:SAMPLES_PER_TASK]]
        seeds = [self.cfg.seed + i for i in range(len(records))]
        with self.ema.applied() if self.ema else nullcontext(), use_adapter(self.model, self.name):
            images = generate(self.model, [r["prompt"] for r in records], seeds=seeds, num_steps=self.cfg.eval_steps,
                              guidance=self.cfg.guidance)
        return [Sample(im, r["prompt"], s, {"task": r["task"]}) for im, r, s in zip(to_pil(images), records, seeds)]

    def save_adapters(self, folder: Path) -> None:
        """Write the checkpoint's adapters into ``folder``: the live student and, with EMA on, its EMA."""
        save_adapter(self.model, self.name, folder / ADAPTER_DIR)
        if self.ema is not None:
            with self.ema.applied():
                save_adapter(self.model, self.name, folder / EMA_DIR)

    def extra_state(self) -> dict:
        """What a method keeps across epochs beyond the optimizer and the EMA, saved in its checkpoints."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore :meth:`extra_state` from a checkpoint being resumed."""

    def save(self) -> None:
        self.check_weights()
        state = {"stage": self.stage, "step": self.step, "epoch": self.epoch, "optimizer": self.opt.state_dict(),
                 "scheduler": self.sched.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
                 "extra": self.extra_state(), "partial": self.partial}
        self.last_good = (save_checkpoint(self.out, self.acc, save_adapters=self.save_adapters, state=state,
                                          config=self.cfg.to_dict()), self.step)

    def export(self) -> Path:
        """Write ``OUT/adapter`` (EMA weights when EMA is on) and leave those weights in the model."""
        if self.ema is not None:
            if self.step < self.cfg.ema_every:
                log.warning("%s: the EMA was never updated (%d steps < ema_every=%d): the exported adapter holds "
                            "the initial weights; lower ema_every or turn ema off", self.stage, self.step,
                            self.cfg.ema_every)
            self.ema.copy_to_params()
        folder = self.out / ADAPTER_DIR
        if self.acc.is_main_process:  # the adapter carries the guidance it was trained to be sampled at
            save_adapter(self.model, self.name, folder, guidance=self.cfg.guidance)
        self.acc.wait_for_everyone()
        return folder

