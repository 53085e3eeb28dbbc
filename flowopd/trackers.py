"""Experiment trackers fed from the one event stream (:mod:`flowopd.events`): TensorBoard event files in the run
folder, or a Weights & Biases run (offline unless the user has configured wandb). The tracker packages are
optional: imported only when chosen, with an error that names the install command.

The CLI (``--report-to``) and the app's worker add :func:`make_tracker`'s callback beside their own; the
trainers know nothing of it.
"""

from __future__ import annotations

import json
import netrc
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .config.choices import REPORT_TARGETS
from .events import Sample, TrainingCallback, numeric
from .layout import TRACKERS_DIR


class TrackerUnavailable(ValueError):
    """The chosen tracker's package is not installed (the message says how to install it)."""


def _missing(target: str, package: str) -> TrackerUnavailable:
    return TrackerUnavailable(f"report_to={target!r} needs the {package} package, which is not installed: run "
                              f"`pip install {package}` (or choose report_to 'none')")


class TensorBoardCallback(TrainingCallback):
    """Scalars (every numeric metric at its step), sample images and the run's config as text."""

    def __init__(self, log_dir: str | Path, config: Mapping | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboard") from None
        self.writer = SummaryWriter(str(log_dir))
        if config:
            self.writer.add_text("config", f"```json\n{json.dumps(dict(config), indent=1, default=str)}\n```", 0)

    def on_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        for name, value in numeric(metrics).items():
            self.writer.add_scalar(name, value, step)

    def on_sample(self, step: int, sample: Sample) -> None:
        import numpy as np

        tag = f"samples/{sample.info.get('task', 'image')}/{sample.seed}"
        self.writer.add_image(tag, np.asarray(sample.image.convert("RGB")), step, dataformats="HWC")

    def on_end(self, stage: str, status: str) -> None:
        self.writer.add_text("status", f"{stage}: {status}", 0)
        self.writer.flush()  # not closed: the app's worker may run the stage again (a sample, then on)


def wandb_mode() -> str:
    """``WANDB_MODE`` when set; else online when an API key is configured (environment or ``~/.netrc``),
    offline otherwise (the run is kept on disk and can be synced later with ``wandb sync``)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    try:
        return "online" if netrc.netrc().authenticators("api.wandb.ai") else "offline"
    except (OSError, netrc.NetrcParseError):
        return "offline"


class WandbCallback(TrainingCallback):
    """One wandb run (resumed, not duplicated, when the stage begins again): metrics at their step, sample images
    with their prompt as caption."""

    def __init__(self, run_dir: str | Path, name: str, config: Mapping | None = None):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        self.wandb, self.dir, self.name, self.config = wandb, Path(run_dir), name, dict(config or {})
        self.run = None

    def _run(self):
        if self.run is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.run = self.wandb.init(project=os.environ.get("WANDB_PROJECT", "flowopd"), name=self.name,
                                       id=re.sub(r"[^A-Za-z0-9_-]", "-", self.name), resume="allow",
                                       dir=str(self.dir), config=self.config, mode=wandb_mode())
        return self.run

    def on_begin(self, stage: str, total: int | None, start_step: int = 0) -> None:
        self._run()

    def on_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self._run().log(numeric(metrics), step=step)

    def on_sample(self, step: int, sample: Sample) -> None:
        image = self.wandb.Image(sample.image, caption=sample.prompt)
        self._run().log({f"samples/{sample.info.get('task', 'image')}": image}, step=step)

    def on_end(self, stage: str, status: str) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if status in ("finished", "stopped") else 1)
            self.run = None


def make_tracker(report_to: str, run_dir: str | Path, name: str, config: Mapping | None = None
                 ) -> TrainingCallback | None:
    """The tracker callback of ``report_to`` (none | tensorboard | wandb) writing under ``run_dir/trackers``.

    Raises:
        ValueError: an unknown target; :class:`TrackerUnavailable` when its package is missing.
    """
    if report_to not in REPORT_TARGETS:
        raise ValueError(f"report_to={report_to!r} is invalid: use one of {', '.join(REPORT_TARGETS)}")
    folder = Path(run_dir) / TRACKERS_DIR
    if report_to == "tensorboard":
        return TensorBoardCallback(folder / "tensorboard", config)
    if report_to == "wandb":
        return WandbCallback(folder, name, config)
    return None
