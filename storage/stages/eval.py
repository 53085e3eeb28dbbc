"""Stage ``eval``: the fixed evaluation protocol in a worker. Config: ``EvalConfig`` fields plus ``model`` and,
optionally, ``adapter`` (an adapter folder, or a grpo/coldstart/opd run id, evaluated on top of the model) and
``limit`` (the first N test prompts per task only: a quick check, e.g. of an imported teacher).

``model`` is ``None`` (the built-in tiny model), a model folder, a Hub id, or the id of a pretrain run
(its ``checkpoint/`` folder). The report goes to ``report.json`` (artifact ``report``) and its numbers
to the metrics ``eval/<task>`` and ``eval/average``; the first images of each task become samples.
Evaluation has no checkpoint: stopping ends it, and a resume starts it over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from flowopd.layout import CHECKPOINT_DIR

from ..paths import RUN_ID_RE
from .base import Stage
from .training import resolve_adapter, resolve_model

if TYPE_CHECKING:
    from ..reporter import Reporter
    from ..store import Store

SAMPLES_PER_TASK = 8


def freeze(config: dict, store: Store) -> dict:
    """Validate the ``EvalConfig`` fields and ``model``; relative model folders become absolute."""
    from flowopd.evaluate import EvalConfig

    data = dict(config)
    model = data.pop("model", None)  # the keys beyond EvalConfig's fields
    adapter, limit = data.pop("adapter", None), data.pop("limit", None)
    frozen = EvalConfig.from_dict(data).to_dict()
    resolved = resolve_model(model, store)  # validates; a run id is kept as given and resolved at run time
    keep_id = isinstance(model, str) and RUN_ID_RE.fullmatch(model)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit={limit!r} is invalid: use a positive integer (test prompts per task) or null")
    extra = {"adapter": resolve_adapter(adapter, store, "adapter")} if adapter is not None else {}
    return {**frozen, "model": model if keep_id else resolved, **extra, **({"limit": limit} if limit else {})}


def _model_path(model: str | None, reporter: Reporter) -> str | None:
    if model and RUN_ID_RE.fullmatch(model):
        return str(reporter.store.run_dir(model) / CHECKPOINT_DIR)
    return model


def run(config: dict, run_dir: Path, reporter: Reporter) -> str:
    """Evaluate; the run's step counts finished tasks."""
    import torch

    from flowopd.evaluate import EvalConfig, evaluate_adapter
    from flowopd.events import StopRequested
    from flowopd.models import load_model

    from ..recorder import StoreCallback

    data = dict(config)
    model_ref = data.pop("model", None)
    adapter, limit = data.pop("adapter", None), data.pop("limit", None)
    cfg = EvalConfig.from_dict(data)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reporter.set_device(device)
    reporter.truncate(0)  # no checkpoint: a resumed evaluation starts over
    reporter.progress(reporter.step, None, None, "loading the model")  # seen from the first second
    model = load_model(_model_path(model_ref, reporter), device=device)
    try:
        report = evaluate_adapter(model, Path(adapter) if adapter else None, cfg,
                                  model_name=model_ref or "built-in tiny-base", callback=StoreCallback(reporter),
                                  samples_per_task=SAMPLES_PER_TASK, limit=limit)
    except StopRequested:
        return "stopped"
    path = run_dir / "report.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    reporter.artifact("report", path, len(cfg.tasks))
    return "finished"


STAGE = Stage(name="eval", help="run the fixed evaluation protocol (config: EvalConfig fields + model)",
              freeze=freeze, run=run)
