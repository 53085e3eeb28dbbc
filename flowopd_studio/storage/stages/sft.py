"""Stage ``sft``: :func:`flowopd.trainers.sft.train_sft` in a worker (a supervised teacher from an image set).

Config: the ``SFTConfig`` fields; ``data`` must be a folder of images with captions (made absolute at freeze, so
the stored snapshot stands on its own), ``model`` may be a pretrain run id. The run folder is the trainer's
``out_dir``: ``checkpoint/`` (resumable: adapter, optimizer, step, RNG), ``adapter/`` (artifact ``adapter``: a
teacher for ``coldstart`` and ``opd`` runs, which may name this run's id) and ``sft.json``. Metrics: ``loss``,
``lr`` and ``images_per_s`` at every step. *Stop* ends the run after a checkpoint; *checkpoint now* and *sample
now* stop the trainer, which saves, and it restarts at once from that checkpoint (an exact resume).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .base import Stage
from .training import checkpoint_step, resolve_model

if TYPE_CHECKING:
    from ..reporter import Reporter
    from ..store import Store

log = logging.getLogger(__name__)


def freeze(config: dict, store: Store) -> dict:
    """The full ``SFTConfig`` with ``data`` an absolute folder and the model resolved; ValueError on bad fields."""
    from flowopd.configs import SFTConfig

    data = dict(config)
    data["model"] = resolve_model(data.get("model"), store)
    cfg = SFTConfig.from_dict(data)
    cfg.require_data()
    return SFTConfig.from_dict({**cfg.to_dict(), "data": str(Path(cfg.data).expanduser().resolve())}).to_dict()


def run(config: dict, run_dir: Path, reporter: Reporter) -> str:
    """Train to the last step (finished) or a stop command (stopped)."""
    import torch

    from flowopd.configs import SFTConfig
    from flowopd.models import load_model
    from flowopd.trainers.sft import train_sft

    from ..recorder import StoreCallback

    cfg = SFTConfig.from_dict(dict(config))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reporter.set_device(device)
    reporter.set_total(cfg.steps)
    start = checkpoint_step(run_dir, config)
    reporter.truncate(start)  # what lies past the checkpoint is redone
    reporter.progress(reporter.step, None, None, "loading the model")  # seen from the first second
    model = load_model(cfg.model, device=device)
    callback = StoreCallback(reporter, pausable=True)
    while True:
        result = train_sft(model, cfg, run_dir, callback=callback, resume=True)
        if not result.stopped:
            return "finished"
        if callback.stop:
            return "stopped"
        if callback.want_sample:  # the adapter in the model is the checkpoint's
            from flowopd.datasets import load_image_set
            from flowopd.trainers.sft import set_samples

            data = load_image_set(cfg.data, model.image_size, cfg.resize)
            for sample in set_samples(model, cfg, data.captions, data.files):
                reporter.sample(result.step, sample.prompt, sample.seed, sample.image, dict(sample.info))
        log.info("checkpoint written at step %d on request; continuing", result.step)
        callback.resumed()


STAGE = Stage(name="sft", help="fine-tune a supervised teacher LoRA on an image set with captions (config: "
              "SFTConfig fields; data is a folder)", freeze=freeze, run=run, checkpoint_step=checkpoint_step)
