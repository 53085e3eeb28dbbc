"""Stage ``pretrain``: :func:`flowopd.pretrain.pretrain` in a worker. Config: the ``PretrainConfig`` fields.

The run folder's ``checkpoint/`` is pretrain's ``out_dir``: the EMA model plus ``train_state.pt``
(parameters, EMA, optimizer, RNG, step), so a resume continues exactly. Commands map onto pretrain's
``should_stop`` hook, which saves before it stops: *stop* ends the run; *checkpoint now* and *sample now*
stop it too and the loop below continues at once from the checkpoint just written (an exact resume,
in-process). After every checkpoint a few fixed prompts are sampled from the saved EMA model.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from flowopd.layout import CHECKPOINT_DIR

from ..errors import CheckpointError
from ..recorder import StoreCallback
from .base import Stage

if TYPE_CHECKING:
    from ..reporter import Reporter
    from ..store import Store

log = logging.getLogger(__name__)
BACKUP_FILE = "train_state.last-good.pt"
SAMPLE_STEPS, SAMPLE_GUIDANCE = 20, 3.0


def freeze(config: dict, store: Store) -> dict:
    """The full ``PretrainConfig`` (defaults filled in) as a JSON-safe dict; raises ValueError on bad fields."""
    from flowopd.pretrain import PretrainConfig

    return asdict(PretrainConfig.from_dict(dict(config)))


def _saved_step(path: Path) -> int:
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


def backup_state(out: Path) -> None:
    """Copy the complete ``train_state.pt`` aside (copy, then atomic rename).

    pretrain() overwrites ``train_state.pt`` in place, so a worker killed while it saves leaves a torn
    file (the kill -9 test hit exactly that); a resume then falls back to this copy of the last good one.
    """
    from flowopd.pretrain import STATE_FILE

    tmp = out / f"{BACKUP_FILE}.tmp"
    shutil.copyfile(out / STATE_FILE, tmp)
    os.replace(tmp, out / BACKUP_FILE)


def checkpoint_step(run_dir: Path, config: dict) -> int:
    """The step of the run's checkpoint, restoring ``train_state.pt`` from the last good copy if it is torn.

    Raises:
        CheckpointError: neither ``train_state.pt`` nor its last good copy can be read.
    """
    from flowopd.pretrain import STATE_FILE

    path, backup = run_dir / CHECKPOINT_DIR / STATE_FILE, run_dir / CHECKPOINT_DIR / BACKUP_FILE
    try:
        return _saved_step(path)
    except Exception as err:  # torch raises pickle, zip, EOF, key and OS errors for missing or damaged files
        problem = "missing" if not path.is_file() else f"corrupt ({type(err).__name__}: {err})"
    try:
        step = _saved_step(backup)
    except Exception:
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} is missing: the run ended before its first checkpoint "
                                  f"(checkpoint_every={config.get('checkpoint_every')}), so there is nothing to "
                                  "resume; submit its config again as a new run") from None
        raise CheckpointError(f"checkpoint {path} is {problem}, and there is no good copy to fall back on: the run "
                              "cannot resume; delete it or submit its config again as a new run") from None
    log.warning("checkpoint %s is %s: restoring its last good copy (step %d)", path, problem, step)
    shutil.copyfile(backup, path.with_suffix(".restore"))
    os.replace(path.with_suffix(".restore"), path)
    return step


class _PretrainCallback(StoreCallback):
    """The store's callback plus what a pretrain run does at each checkpoint: keep a last good copy of the
    state, and sample the EMA model (once per step, or on a *sample now* command)."""

    def __init__(self, cfg, out: Path, reporter: Reporter, start: int):
        super().__init__(reporter, flush_metrics=False, pausable=True)  # steps take ms: flush before saves
        self.cfg, self.out, self.sampled = cfg, out, start

    def on_metrics(self, step: int, metrics) -> None:
        super().on_metrics(step, metrics)
        if step % self.cfg.checkpoint_every == 0 or step == self.cfg.steps:
            self.flush()  # every metric up to a checkpoint is stored before that checkpoint is

    def on_artifact(self, step: int, kind: str, path: Path) -> None:
        backup_state(self.out)
        log.info("checkpoint at step %d/%d", step, self.cfg.steps)
        super().on_artifact(step, kind, path)
        if step > self.sampled or self.want_sample:
            self.sampled, self.want_sample = step, False
            sample_checkpoint(self.out, step, self.reporter)


def sample_checkpoint(folder: Path, step: int, reporter: Reporter) -> None:
    """One image per task (its first test prompt, seed = task index) from the EMA model in ``folder``."""
    from flowopd.models import load_model
    from flowopd.models.base import to_pil
    from flowopd.sampling import generate
    from flowopd.world.prompts import TASKS
    from flowopd.world.splits import load_prompts

    prompts = [load_prompts(task, "test")[0]["prompt"] for task in TASKS]
    seeds = list(range(len(prompts)))
    images = generate(load_model(folder), prompts, seeds=seeds, num_steps=SAMPLE_STEPS, guidance=SAMPLE_GUIDANCE)
    for prompt, seed, image in zip(prompts, seeds, to_pil(images)):
        reporter.sample(step, prompt, seed, image)


def run(config: dict, run_dir: Path, reporter: Reporter) -> str:
    """Pretrain until ``steps`` (finished) or a stop command (stopped), resuming from ``checkpoint/``."""
    from flowopd.pretrain import STATE_FILE, PretrainConfig, pretrain

    cfg = PretrainConfig.from_dict(dict(config))
    out = run_dir / CHECKPOINT_DIR
    reporter.set_device("cpu")  # pretrain() builds its model on the CPU: it has no device argument yet
    reporter.set_total(cfg.steps)
    saved = (out / STATE_FILE).is_file() or (out / BACKUP_FILE).is_file()
    start = checkpoint_step(run_dir, config) if saved else 0
    reporter.truncate(start)  # what lies past the checkpoint is redone
    if start:
        log.info("resuming run %s from its checkpoint at step %d", reporter.run_id, start)
    callback = _PretrainCallback(cfg, out, reporter, start)
    while True:
        pretrain(cfg, out, callback=callback, resume=True)
        if callback.reporter.step >= cfg.steps:
            return "finished"
        if callback.stop:
            return "stopped"
        log.info("checkpoint written at step %d on request; continuing", callback.reporter.step)
        callback.resumed()


STAGE = Stage(name="pretrain", help="train the built-in tiny base model (config: PretrainConfig fields)",
              freeze=freeze, run=run, checkpoint_step=checkpoint_step)
