"""Stage ``coldstart``: :func:`flowopd.coldstart.trainer.run_coldstart` in a worker (the student's first LoRA).

Config: the ``ColdStartConfig`` fields; ``teachers`` may name ``grpo`` (or other adapter) run ids, ``model``
a pretrain run id. The adapter goes to the run folder's ``adapter/`` (artifact ``adapter``, the ``init``
of an ``opd`` run). ``merge`` takes milliseconds and logs nothing; ``sft`` logs ``loss`` and
``images_per_s`` per step and checks for *stop* after every step. There is no checkpoint: a stopped or
failed cold start starts over when resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import Stage
from .training import resolve_model, resolve_teachers

if TYPE_CHECKING:
    from ..reporter import Reporter
    from ..store import Store


def freeze(config: dict, store: Store) -> dict:
    """The full ``ColdStartConfig`` with teacher run ids and folders resolved to absolute adapter folders."""
    from flowopd.coldstart.config import ColdStartConfig

    data = dict(config)
    data["model"] = resolve_model(data.get("model"), store)
    data["teachers"] = resolve_teachers(data.get("teachers", {}), store)
    return ColdStartConfig.from_dict(data).to_dict()


def run(config: dict, run_dir: Path, reporter: Reporter) -> str:
    """Build the student's adapter; "finished", or "stopped" on a stop command during SFT."""
    import torch

    from flowopd.coldstart.config import ColdStartConfig
    from flowopd.coldstart.trainer import run_coldstart
    from flowopd.events import CallbackList, StopRequested
    from flowopd.memplan.preflight import preflight
    from flowopd.models import load_model
    from flowopd.trackers import make_tracker

    from ..recorder import StoreCallback

    cfg = ColdStartConfig.from_dict(dict(config))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reporter.set_device(device)
    reporter.truncate(0)  # no checkpoint: a resumed cold start starts over
    reporter.progress(reporter.step, None, None, "loading the model")  # seen from the first second
    model = load_model(cfg.model, device=device, resolution=cfg.resolution)
    preflight(model, "coldstart", cfg)
    try:
        tracker = make_tracker(cfg.report_to, run_dir, reporter.run_id, cfg.to_dict())
        run_coldstart(model, cfg, run_dir, callback=CallbackList([StoreCallback(reporter, flush_metrics=False),
                                                                  tracker]))
    except StopRequested:
        return "stopped"
    return "finished"


STAGE = Stage(name="coldstart", help="build the student's first LoRA from the teachers: merge, merge-avg, sft "
              "or none (config: ColdStartConfig fields; teachers may be run ids)", freeze=freeze, run=run)
