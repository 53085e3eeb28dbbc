"""Stage ``reproduce``: the whole tiny reproduction benchmark (:func:`flowopd.reproduce.reproduce`) in a worker.

Config: ``ReproduceConfig`` fields (``budget`` picks the preset the others override), e.g. ``{"budget":
"default", "seeds": 3}``. The benchmark writes to the run folder's ``reproduce/``; its ``report.md`` and
``results.json`` become ``report`` artifacts. The run's step counts finished stages (over all seeds), each
logged as ``stages_done`` with the stage's evaluation as ``eval/<stage>/<metric>``; every stage's training
curve is logged as ``seed<k>/<stage>/<metric>`` at the stage's own optimizer steps.

*stop* (checked after every training epoch and between stages) saves the running trainer's checkpoint;
a resume starts the run at step 0 again, skips the finished stages (re-logging their results) and
continues the interrupted trainer from its checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import Stage
from .training import resolve_model

if TYPE_CHECKING:
    from ..reporter import Reporter
    from ..store import Store

OUT_DIR = "reproduce"


def freeze(config: dict, store: Store) -> dict:
    """The full ``ReproduceConfig`` (the preset's values filled in, model resolved)."""
    from flowopd.reproduce.config import ReproduceConfig

    data = dict(config)
    if "model" in data:
        data["model"] = resolve_model(data["model"], store)
    return ReproduceConfig.from_dict(data).to_dict()


def run(config: dict, run_dir: Path, reporter: Reporter) -> str:
    """Run or continue the benchmark; "stopped" on a stop command, else "finished"."""
    from flowopd.reproduce.config import ReproduceConfig
    from flowopd.reproduce.runner import reproduce
    from flowopd.reproduce.stage import ReproduceStopped
    from flowopd.training.dist import make_accelerator

    from ..recorder import StoreCallback

    cfg = ReproduceConfig.from_dict(dict(config))
    accelerator = make_accelerator()
    reporter.set_device(accelerator.device.type)
    reporter.truncate(0)  # finished stages are skipped quickly and their curves and results logged again
    try:
        reproduce(cfg, run_dir / OUT_DIR, callback=StoreCallback(reporter), accelerator=accelerator)
    except ReproduceStopped:
        return "stopped"
    return "finished"


STAGE = Stage(name="reproduce", help="run the tiny reproduction benchmark (config: ReproduceConfig fields, "
              'e.g. {"budget": "default", "seeds": 3})', freeze=freeze, run=run)
