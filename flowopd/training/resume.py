"""A stop inside an epoch and its exact resume (a mixin of :class:`flowopd.training.loop.RLTrainer`).

In a one-process run the callback's ``stop_now`` is polled before every optimizer step
(:meth:`StopResume.poll_stop`). A stop there checkpoints the state after the steps taken together with the
epoch's start (the snapshot its rollout was drawn from); a resume puts that start back, draws the same rollout,
skips the steps already taken and then restores the checkpoint's own state, so the run continues exactly as if
it had not stopped.

The mixin reads the trainer's ``params``, ``opt``, ``sched``, ``ema``, ``step``, ``epoch``, ``last_lr``,
``callback``, ``epoch_start``, ``partial`` and ``skip``, and calls its ``extra_state`` and ``load_extra_state``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from .checkpoint import rng_state, set_rng_state


class StopInEpoch(Exception):
    """A stop seen before the epoch's optimizer step ``chunks_done`` (:meth:`StopResume.poll_stop`), with the
    metric sums of the steps taken so far."""

    def __init__(self, chunks_done: int, sums: dict):
        super().__init__(f"stop before optimizer step {chunks_done} of the epoch")
        self.chunks_done, self.sums = chunks_done, sums


def _cpu_copy(value: Any) -> Any:
    """A deep copy of a (nested) state dict with every tensor copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return copy.deepcopy(value)


class StopResume:
    """Snapshot, stop and resume inside an epoch (see the module docstring)."""

    def poll_stop(self, chunks_done: int, sums: dict) -> None:
        """Before the epoch's optimizer step ``chunks_done``: a pending stop (``stop_now``) ends the epoch here
        (one process only; with several, every process must agree, so the stop waits for the epoch's end)."""
        if self.epoch_start is not None and self.callback is not None and self.callback.stop_now():
            raise StopInEpoch(chunks_done, {k: list(v) for k, v in sums.items()})

    def partial_state(self, stop: StopInEpoch) -> dict:
        """What a checkpoint saved inside an epoch needs beyond the trainer's state: the epoch's start (what its
        rollout was drawn with: the student, EMA, extras, RNG and step), the steps taken and their metric sums."""
        return {"epoch": self.epoch, "chunks_done": stop.chunks_done, "sums": stop.sums, "start": self.epoch_start}

    def begin_partial_epoch(self) -> None:
        """Resuming inside an epoch: put back its start, so that :meth:`train_epoch` draws the same rollout, and
        keep the checkpoint's state for the step where the stop landed (:meth:`skip_done_steps`)."""
        mid = self.snapshot(optimizer=True)
        self.restore(self.partial["start"])
        self.skip = {"chunks": self.partial["chunks_done"], "mid": mid, "sums": self.partial["sums"]}
        self.partial = None

    def skip_done_steps(self, chunk: int, metrics) -> bool:
        """In a resumed epoch: True for an optimizer step the checkpoint had taken (skipped); at the first one it
        had not, the checkpoint's weights, optimizer, schedule, EMA, step, RNG and metric sums come back."""
        if self.skip is None:
            return False
        if chunk < self.skip["chunks"]:
            return True
        self.restore(self.skip["mid"])
        metrics.sums = {k: list(v) for k, v in self.skip["sums"].items()}
        self.skip = None
        return False

    def snapshot(self, optimizer: bool = False) -> dict:
        """The trainer's state on the CPU: the student, EMA, extras, RNG and step, which an epoch's rollout is
        drawn with (taken as each epoch starts; no optimizer step has run then, so the optimizer and schedule
        are left out), and with ``optimizer`` also the optimizer, schedule and last rate (a resumed checkpoint's
        state inside an epoch)."""
        state = {"params": [p.detach().to("cpu", copy=True) for p in self.params], "rng": rng_state(),
                 "ema": _cpu_copy(self.ema.state_dict()) if self.ema else None, "step": self.step,
                 "extra": _cpu_copy(self.extra_state())}
        if optimizer:
            state.update(optimizer=_cpu_copy(self.opt.state_dict()), scheduler=_cpu_copy(self.sched.state_dict()),
                         last_lr=self.last_lr)
        return state

    def restore(self, state: dict) -> None:
        """Put back a :meth:`snapshot` (and its optimizer, schedule and last rate when it has them)."""
        with torch.no_grad():
            for p, saved in zip(self.params, state["params"]):
                p.copy_(saved)
        if "optimizer" in state:
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.last_lr = state["last_lr"]
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.step = state["step"]
        self.load_extra_state(state["extra"])
        self.opt.zero_grad(set_to_none=True)
        set_rng_state(state["rng"])
