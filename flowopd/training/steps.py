"""The optimizer-step machinery every RL trainer shares (a mixin of :class:`flowopd.training.loop.RLTrainer`):
gradient accumulation over micro-batches and denoising steps, the all-reduced clipped step, and the checks that
stop a diverging run (:class:`DivergedError`) before a bad checkpoint is written.

The mixin reads the trainer's ``model``, ``cfg``, ``name``, ``params``, ``opt``, ``sched``, ``ema``, ``acc``,
``step``, ``epoch``, ``stage`` and ``last_good``, and calls its ``sde_steps``, ``note``, ``poll_stop`` and
``skip_done_steps`` (a stop inside an epoch and its resume: :mod:`flowopd.training.resume`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch

from ..adapters import use_adapter
from .dist import MetricSums, allreduce_mean
from .rollout import epoch_seed

# A student whose velocity on a probe differs from the base's by more than this times (1 + the base's largest
# velocity) has exploded: a trained LoRA moves velocities (which are O(1)) by far less than 1.
EXPLODED_FACTOR = 1e3


class DivergedError(FloatingPointError):
    """Training stopped on a non-finite or exploding loss, gradient or weights; the message names the step,
    the last good checkpoint and the fix."""


class OptimizerSteps:
    """Accumulate, step and check the student's LoRA (see the module docstring)."""

    def diverged(self, what: str, when: str | None = None) -> DivergedError:
        """The error that stops training; ``when`` defaults to the step under way."""
        where = (f"the last good checkpoint is {self.last_good[0]} (step {self.last_good[1]})" if self.last_good
                 else "no checkpoint was written yet")
        when = when or f"at step {self.step + 1} (epoch {self.epoch + 1})"
        return DivergedError(f"{self.stage}: {what} {when}; training stopped and {where}: lower lr (now "
                             f"{self.cfg.lr}) or check the rewards/teachers")

    def accumulate(self, index: list[int], micro_loss: Callable[[list[int], int], tuple[torch.Tensor, dict]],
                   metrics: MetricSums) -> None:
        """Train on the local rollout rows ``index``: ``optimizer_steps_per_epoch`` steps, each accumulating
        its micro-batches (``train_batch_size`` rows) over the trained denoising steps j.

        ``micro_loss(rows, j) -> (scalar loss, {metric: value or [rows] tensor})``. A non-finite loss is not
        back-propagated; the step then raises on every process (:meth:`optimizer_step`).
        """
        # The student is the ambient adapter of the whole step: every other adapter is used inside a context that
        # restores it, so a checkpointed backward (gradient_checkpointing) recomputes the student's forward.
        with use_adapter(self.model, self.name):
            self._accumulate(index, micro_loss, metrics)

    def _accumulate(self, index: list[int], micro_loss: Callable[[list[int], int], tuple[torch.Tensor, dict]],
                    metrics: MetricSums) -> None:
        cfg, n_opt = self.cfg, self.cfg.optimizer_steps_per_epoch
        chunks = [index[k * len(index) // n_opt:(k + 1) * len(index) // n_opt] for k in range(n_opt)]
        pick = random.Random(epoch_seed(cfg.seed, self.epoch, self.acc.process_index, "timesteps"))
        self.micro_calls = 0  # (micro-batch, step) losses so far this epoch: a loss's own draws may key on it
        for number, chunk in enumerate(chunks):
            if self.skip_done_steps(number, metrics):  # a resumed epoch: this step is in the checkpoint
                for _ in range(0, len(chunk), cfg.train_batch_size):  # the draws it made, made again
                    self.micro_calls += len(self.microbatch_steps(pick))
                continue
            self.poll_stop(number, metrics.sums)  # a stop lands here, before the next optimizer step's work
            bad = None
            for start in range(0, len(chunk), cfg.train_batch_size):
                rows = chunk[start:start + cfg.train_batch_size]
                steps = self.microbatch_steps(pick)
                for j in steps:
                    try:
                        loss, values = micro_loss(rows, j)
                    except FloatingPointError:
                        loss, values = torch.tensor(float("nan")), {}
                    self.micro_calls += 1
                    if not torch.isfinite(loss.detach()):
                        bad = float(loss.detach())
                        break
                    # Each (micro-batch, step) weighs by its rows, so a chunk's gradient is its per-sample mean.
                    (loss * len(rows) / (len(chunk) * len(steps))).backward()
                    metrics.add("loss", float(loss.detach()))
                    metrics.update(values)
                if bad is not None:
                    break
            metrics.add("grad_norm", self.optimizer_step(bad, len(chunk)))
            self.note(f"epoch {self.epoch + 1}/{cfg.epochs}: optimizer step {self.step}", fraction=0.0)

    def microbatch_steps(self, rng: random.Random) -> list[int]:
        """The denoising steps one micro-batch trains on: the epoch's :meth:`sde_steps`, or
        ``steps_per_microbatch`` of them drawn without replacement (in trajectory order)."""
        steps, k = self.sde_steps(self.epoch), self.cfg.steps_per_microbatch
        return steps if k in (0, len(steps)) else sorted(rng.sample(steps, k))

    def optimizer_step(self, bad_loss: float | None, rows: int) -> float:
        """All-reduce the student's gradients (with the NaN flag and the row count), clip, step; returns the
        gradient norm. A step no process had rows for (all groups masked) leaves the weights alone: Adam's
        momentum would otherwise move them. The step count advances either way, so steps stay unique."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flags = torch.tensor([0.0 if bad_loss is None else 1.0, float(rows)], device=self.params[0].device)
        *grads, flags = allreduce_mean(self.acc, [*grads, flags])
        if flags[0].item() > 0:
            raise self.diverged(f"the loss became {bad_loss}" if bad_loss is not None
                                else "the loss became non-finite on another process")
        if flags[1].item() == 0:
            self.opt.zero_grad(set_to_none=True)
            self.step += 1
            return 0.0
        for p, g in zip(self.params, grads):
            p.grad = g
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm))
        if not math.isfinite(norm):
            raise self.diverged(f"the gradient norm became {norm}")
        self.last_lr = self.opt.param_groups[0]["lr"]  # what this step used; the callback reports it
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.step)
        return norm

    def check_weights(self) -> None:
        """Raise :class:`DivergedError` when the student's weights are non-finite or have exploded, so that no
        checkpoint is written over the last good one. Exploded weights can stay finite for a step and only
        turn the next rollout into NaN; a probe forward (two noise latents, the empty prompt, sigma 1,
        against the base) catches them before they are saved."""
        when = f"after step {self.step} (epoch {self.epoch})"
        if not all(bool(torch.isfinite(p).all()) for p in self.params):
            raise self.diverged("the student's weights became non-finite", when)
        model = self.model
        probe = torch.randn((2, *model.latent_shape), generator=torch.Generator().manual_seed(0)).to(model.device)
        embeds = model.uncond_embeds(2)
        with torch.no_grad():
            with use_adapter(model, None):
                base = model.velocity(probe, 1.0, embeds)
            with use_adapter(model, self.name):
                student = model.velocity(probe, 1.0, embeds)
        gap, scale = float((student - base).abs().max()), float(base.abs().max())
        if not math.isfinite(gap):
            raise self.diverged("the student's weights exploded (its velocity on a probe is not finite)", when)
        if gap > EXPLODED_FACTOR * (1 + scale):
            raise self.diverged(f"the student's weights exploded (its velocity on a probe is {gap:.3g} away from "
                                f"the base's, whose largest is {scale:.3g})", when)
