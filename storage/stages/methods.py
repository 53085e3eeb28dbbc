"""One worker stage per registered training method (:mod:`flowopd.methods`), built from its record.

Config: the method's config fields; ``model`` may be a pretrain run id, the method's adapter fields (OPD's
``teachers``, ``init``, ``mar_anchor``) run ids, and its folder fields (SFT's ``data``) are made absolute. The run
folder is the trainer's ``out_dir`` (``checkpoint/`` and ``adapter/`` inside it). The trainer's callback logs its
metrics at each optimizer step and polls the run's commands: *stop* (or SIGTERM) ends the run after a
checkpoint; *checkpoint now* and *sample now* stop the trainer, which saves, and the loop restarts it at once
from that checkpoint (an exact resume, in-process); *sample now* also shows the method's preview of the saved
adapter. The trainer speaks :mod:`flowopd.events`; :class:`~..recorder.StoreCallback` writes what it reports.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import Stage
from .training import checkpoint_step, resolve_adapter, resolve_model

if TYPE_CHECKING:
    from flowopd.methods import Method

    from ..reporter import Reporter
    from ..store import Store

log = logging.getLogger(__name__)


def _resolve_field(value: Any, keep: tuple[str, ...], store: Store, field: str) -> Any:
    """An adapter field's value with run ids and folders resolved: None stays, a dict is resolved entry by entry,
    and the words in ``keep`` (``mar_anchor``'s ``base`` and task names) stay as they are."""
    if value is None or (isinstance(value, str) and value in keep):
        return value
    if isinstance(value, dict):
        return {key: resolve_adapter(ref, store, f"{field}[{key!r}]") for key, ref in value.items()}
    if field == "teachers":
        raise ValueError(f"teachers={value!r} is invalid: map tasks to adapter folders or run ids")
    return resolve_adapter(value, store, field)


def freeze_method(method: Method, config: dict, store: Store) -> dict:
    """The full config (defaults filled in, references resolved); ValueError naming the bad field."""
    data = dict(config)
    data["model"] = resolve_model(data.get("model"), store)
    for field, keep in method.adapter_fields.items():
        if field in data:
            data[field] = _resolve_field(data[field], keep, store, field)
    return method.with_absolute_folders(method.config.from_dict(data)).to_dict()


def run_method(method: Method, config: dict, run_dir: Path, reporter: Reporter) -> str:
    """Train to the last step (``finished``) or a stop command (``stopped``)."""
    import torch

    from flowopd.events import CallbackList
    from flowopd.memplan.preflight import preflight
    from flowopd.models import load_model
    from flowopd.trackers import make_tracker
    from flowopd.training.dist import make_accelerator

    from ..recorder import StoreCallback

    cfg = method.config.from_dict(dict(config))
    tracker = make_tracker(getattr(cfg, "report_to", "none"), run_dir, reporter.run_id, cfg.to_dict())
    train = method.load_trainer()
    accelerator = make_accelerator()
    reporter.set_device(accelerator.device.type)
    reporter.set_total(cfg.total_steps())
    start = checkpoint_step(run_dir, config)
    reporter.truncate(start)  # what lies past the checkpoint is redone
    if start:
        log.info("resuming %s run %s from its checkpoint at step %d", method.kind, reporter.run_id, start)
    torch.manual_seed(cfg.seed)  # a new LoRA's init: the same run gives the same weights (a resume restores RNG)
    reporter.progress(reporter.step, None, None, "loading the model")  # seen from the first second
    model = load_model(cfg.model, device=accelerator.device, resolution=getattr(cfg, "resolution", None))
    preflight(model, method.kind, cfg)  # an SD3.5 run over its GPU's memory fails here with the plan and the fix
    callback = StoreCallback(reporter, pausable=True)
    both = CallbackList([callback, tracker])
    while True:
        result = train(model, cfg, run_dir, callback=both, resume=True, accelerator=accelerator)
        if not result.stopped:
            return "finished"
        if callback.stop:
            return "stopped"
        if callback.want_sample:  # the adapter in the model is the checkpoint's
            for sample in method.load_preview()(model, cfg):
                reporter.sample(result.step, sample.prompt, sample.seed, sample.image, dict(sample.info))
        log.info("checkpoint written at step %d on request; continuing", result.step)
        callback.resumed()


def method_stage(method: Method) -> Stage:
    """The worker stage of ``method``: ``flowopd runs submit KIND`` and the app's queue."""
    return Stage(name=method.kind, help=f"{method.summary} (config: {method.config.__name__} fields)",
                 freeze=lambda config, store: freeze_method(method, config, store),
                 run=lambda config, run_dir, reporter: run_method(method, config, run_dir, reporter),
                 checkpoint_step=checkpoint_step)
