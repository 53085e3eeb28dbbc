"""The terminal's side of :mod:`flowopd.events`: one tqdm progress bar per stage, with ETA and a few metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import metric_names as names
from .events import CallbackList, Progress, TrainingCallback

log = logging.getLogger(__name__)
SHOWN = (names.LOSS, names.REWARD_TOTAL, names.KL_TEACHER, names.KL_BASE, "average")


class TerminalCallback(TrainingCallback):
    """A tqdm bar over a stage's steps; its description follows the stage (reproduce: ``seed0/teacher-text``),
    its postfix the latest of ``shown`` metrics (matched by the end of their name) and the progress message."""

    def __init__(self, unit: str = "step", shown: Sequence[str] = SHOWN, disable: bool | None = None):
        self.unit, self.shown, self.disable = unit, tuple(shown), disable
        self.bar = None
        self.stage: str | None = None
        self._postfix: dict[str, str] = {}

    def on_begin(self, stage: str, total: int | None, start_step: int = 0) -> None:
        from tqdm import tqdm

        self.close()
        self.stage = stage
        self.bar = tqdm(total=total, initial=start_step, desc=stage, unit=self.unit, disable=self.disable)

    def on_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            short = key.rsplit("/", 1)[-1] if key.count("/") > 1 else key
            if any(key == s or key.endswith("/" + s) for s in self.shown) and isinstance(value, (int, float)):
                self._postfix[short] = f"{value:.4g}"

    def on_progress(self, progress: Progress) -> None:
        if self.bar is None:
            return
        if progress.stage != self.stage:  # a sub-stage (a reproduce stage): its line, not its steps
            self._postfix["at"] = f"{progress.stage}: {progress.message}" if progress.message else progress.stage
            self.bar.set_postfix(self._postfix, refresh=True)
            return
        if progress.total is not None and self.bar.total != progress.total:
            self.bar.total = progress.total
        self.bar.n = progress.step
        self.bar.set_description(progress.stage, refresh=False)
        shown = {k: v for k, v in self._postfix.items() if k != "at"}
        if progress.message:
            shown["at"] = progress.message
        self.bar.set_postfix(shown, refresh=False)
        self.bar.refresh()

    def on_artifact(self, step: int, kind: str, path: Path) -> None:
        log.debug("%s written at step %d: %s", kind, step, path)

    def on_end(self, stage: str, status: str) -> None:
        if self.bar is not None and status != "finished":
            self.bar.set_postfix_str(status)
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextmanager
def command_callback(args: Any, stage: str, config: dict, out: str | Path | None = None, unit: str = "step",
                     extra: dict | None = None) -> Iterator[TrainingCallback]:
    """The callback of a foreground command: the terminal's progress bar, plus the run store's when the
    command root set ``args.recorder`` (``--record``): a context manager ``(stage, config, out, extra)``
    yielding a callback, which this library never imports itself. ``config`` is the stage's config as the
    store's stage reads it; ``extra`` what else the command used (e.g. an evaluated adapter)."""
    terminal = TerminalCallback(unit)
    recorder = getattr(args, "recorder", None)
    try:
        if recorder is None:
            yield terminal
        else:
            with recorder(stage, config, out, extra) as stored:
                yield CallbackList([terminal, stored])
    finally:
        terminal.close()
