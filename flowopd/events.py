"""The one training-event protocol every stage speaks (pretrain, eval, GRPO, cold start, OPD, reproduce).

A stage reports through a :class:`TrainingCallback` (trl's ``TrainerCallback`` in spirit): every hook is a
no-op by default, so an implementation overrides only what it shows. Two implementations exist, each once:
the terminal's progress bar (:mod:`flowopd.terminal`) and the run store (``flowopd_studio.storage.recorder``);
:class:`CallbackList` sends one stream to several, :class:`Scoped` prefixes a sub-stage's metric names (the
reproduce benchmark's ``seed0/teacher-text/...`` curves).

Order of calls: ``on_begin`` once, then per step ``on_metrics`` (and ``on_sample`` / ``on_artifact`` when
there are any), ``on_progress`` whenever the stage moves (also inside long steps, e.g. per evaluated task),
``should_stop`` at the points where the stage can stop cleanly, and ``on_end`` once. Steps only grow within
a stage; after a resume from step k a stage re-begins at k.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Progress:
    """Where a stage is. ``eta_s`` is None until a step has been timed.

    Attributes:
        stage: what runs, e.g. ``"grpo"`` or ``"seed0/teacher-text"``.
        step: units done (optimizer steps, evaluated tasks, finished benchmark stages).
        total: units planned (None when unknown).
        elapsed_s: seconds since ``on_begin`` (this process).
        eta_s: estimated seconds left.
        message: a short human line, e.g. ``"sampling compose (48 images)"``.
    """

    stage: str
    step: int
    total: int | None
    elapsed_s: float
    eta_s: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.step / self.total)


@dataclass(frozen=True)
class Sample:
    """An image a stage shows (a PIL image), with where it came from."""

    image: Any
    prompt: str
    seed: int
    info: dict = field(default_factory=dict)  # e.g. {"task": "text"}


class TrainingCallback:
    """Hooks a stage calls while it runs; override what you need."""

    def on_begin(self, stage: str, total: int | None, start_step: int = 0) -> None:
        """The stage starts (or resumes at ``start_step``) with ``total`` units planned."""

    def on_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Scalar metrics of ``step`` (names from :mod:`flowopd.metric_names`)."""

    def on_sample(self, step: int, sample: Sample) -> None:
        """An image sampled at ``step``."""

    def on_artifact(self, step: int, kind: str, path: Path) -> None:
        """A file or folder written at ``step``: ``checkpoint``, ``adapter``, ``report``, ``export``."""

    def on_progress(self, progress: Progress) -> None:
        """The stage moved (called at least once per step, and within long steps)."""

    def should_stop(self) -> bool:
        """True asks the stage to stop at its next clean point (after saving a checkpoint where it has one)."""
        return False

    def stop_now(self) -> bool:
        """True asks a stop (not a pause) that should not wait for the epoch's end: an RL trainer polls it
        before each optimizer step and stops there, with a checkpoint of that step."""
        return False

    def on_end(self, stage: str, status: str) -> None:
        """The stage ended: ``finished``, ``stopped`` or ``failed``."""


class CallbackList(TrainingCallback):
    """Several callbacks as one; ``should_stop`` is true when any asks (each is asked every time)."""

    def __init__(self, callbacks: Sequence[TrainingCallback | None]):
        self.callbacks = [c for c in callbacks if c is not None]

    def on_begin(self, stage: str, total: int | None, start_step: int = 0) -> None:
        for c in self.callbacks:
            c.on_begin(stage, total, start_step)

    def on_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        for c in self.callbacks:
            c.on_metrics(step, metrics)

    def on_sample(self, step: int, sample: Sample) -> None:
        for c in self.callbacks:
            c.on_sample(step, sample)

    def on_artifact(self, step: int, kind: str, path: Path) -> None:
        for c in self.callbacks:
            c.on_artifact(step, kind, path)

    def on_progress(self, progress: Progress) -> None:
        for c in self.callbacks:
            c.on_progress(progress)

    def should_stop(self) -> bool:
        return any([c.should_stop() for c in self.callbacks])  # a list: every callback polls its commands

    def stop_now(self) -> bool:
        return any([c.stop_now() for c in self.callbacks])

    def on_end(self, stage: str, status: str) -> None:
        for c in self.callbacks:
            c.on_end(stage, status)


class Scoped(TrainingCallback):
    """A sub-stage's events under ``prefix``: metric names become ``prefix/name``, the progress's stage
    ``prefix``; its end becomes a progress line, so that the outer stage's own begin and end stay single."""

    def __init__(self, inner: TrainingCallback, prefix: str):
        self.inner, self.prefix = inner, prefix

    def on_begin(self, stage: str, total: int | None, start_step: int = 0) -> None:
        """Nothing: :func:`begin`'s first progress ("starting") shows the sub-stage."""

    def on_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self.inner.on_metrics(step, {f"{self.prefix}/{k}": v for k, v in metrics.items()})

    def on_sample(self, step: int, sample: Sample) -> None:
        self.inner.on_sample(step, replace(sample, info={**sample.info, "stage": self.prefix}))

    def on_artifact(self, step: int, kind: str, path: Path) -> None:
        self.inner.on_artifact(step, kind, path)

    def on_progress(self, progress: Progress) -> None:
        self.inner.on_progress(replace(progress, stage=self.prefix))

    def should_stop(self) -> bool:
        return self.inner.should_stop()

    def stop_now(self) -> bool:
        return self.inner.stop_now()

    def on_end(self, stage: str, status: str) -> None:
        self.inner.on_progress(Progress(self.prefix, 0, None, 0.0, message=status))


class Clock:
    """Turns (step, total) into :class:`Progress` with an ETA from the steps timed in this process.

    >>> clock = Clock("grpo", total=10, start_step=2, now=lambda: 0.0)
    >>> clock.progress(2).eta_s is None
    True
    >>> clock._now = lambda: 8.0
    >>> clock.progress(6).eta_s  # 4 steps in 8 s: 2 s a step, 4 steps left
    8.0
    """

    def __init__(self, stage: str, total: int | None, start_step: int = 0, now=time.perf_counter):
        self.stage, self.total, self.start_step, self._now = stage, total, start_step, now
        self._t0 = now()

    def progress(self, step: int, message: str = "", fraction_of_step: float = 0.0) -> Progress:
        """Progress at ``step`` (plus ``fraction_of_step`` of the next one, for progress inside a step)."""
        elapsed = self._now() - self._t0
        done = step + fraction_of_step - self.start_step
        eta = None
        if self.total is not None and done > 0:
            eta = max(0.0, (self.total - step - fraction_of_step) * elapsed / done)
        return Progress(self.stage, step, self.total, elapsed, eta, message)


def begin(callback: TrainingCallback | None, stage: str, total: int | None, start_step: int = 0) -> Clock:
    """Call ``on_begin`` and a first ``on_progress`` (so a watcher sees the stage from its first second);
    returns the stage's :class:`Clock`."""
    clock = Clock(stage, total, start_step)
    if callback is not None:
        callback.on_begin(stage, total, start_step)
        callback.on_progress(clock.progress(start_step, "starting"))
    return clock


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The real-valued entries of ``metrics`` (bools, strings, lists and images dropped)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class FunctionCallback(TrainingCallback):
    """A plain function of one flat dict per step as a callback (scripts and tests): ``fn({"step": k,
    **metrics, "samples": [{"image", "prompt", "seed", **info}]})``, ``samples`` only when the step sampled;
    ``should_stop`` an optional function."""

    def __init__(self, fn, should_stop=None):
        self.fn, self._should_stop, self._samples = fn, should_stop, []

    def on_sample(self, step: int, sample: Sample) -> None:
        self._samples.append({"image": sample.image, "prompt": sample.prompt, "seed": sample.seed, **sample.info})

    def on_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        payload: dict[str, Any] = {"step": step, **metrics}
        if self._samples:
            payload["samples"], self._samples = self._samples, []
        if self.fn is not None:
            self.fn(payload)

    def should_stop(self) -> bool:
        return bool(self._should_stop is not None and self._should_stop())


def as_callback(callback, should_stop=None) -> TrainingCallback | None:
    """``callback`` as a :class:`TrainingCallback`: one already is; a function gets the flat dicts of
    :class:`FunctionCallback`; ``should_stop`` (a function) is polled too. None and None give None."""
    if isinstance(callback, TrainingCallback):
        if should_stop is None:
            return callback
        return CallbackList([callback, FunctionCallback(None, should_stop)])
    if callback is None and should_stop is None:
        return None
    return FunctionCallback(callback, should_stop)


class StopRequested(Exception):
    """Raised by a stage without checkpoints (evaluation, cold start) when its callback asked it to stop;
    what it had finished was reported, nothing else is saved."""
