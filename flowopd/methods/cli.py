"""``flowopd train <method>`` and ``flowopd coldstart``: thin wrappers over the trainers.

``train`` has one sub-command per registered method (:mod:`flowopd.methods`): its help, example, flags and
trainer come from the method's record. :func:`register` adds the commands to the ``flowopd`` parser; it imports
nothing heavy (torch, the trainers and the model load inside the handlers). A bad config raises ``ValueError``
naming the field, which ``flowopd.cli.main`` turns into ``flowopd: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

from ..config.choices import REPORT_TARGETS
from ..events import CallbackList
from ..terminal import command_callback
from ..trackers import make_tracker

log = logging.getLogger(__name__)
COLDSTART_EXAMPLE = ("flowopd coldstart --config merge.json --out runs/merge\n"
                     'with merge.json = {"mode": "merge", "teachers": {"compose": "runs/teacher-compose/adapter", '
                     '"text": "runs/teacher-text/adapter"}}')


def cmd_train(args: argparse.Namespace) -> None:
    from ..config.base import read_config
    from .registry import get_method

    method = get_method(args.stage)
    flags = {f.field: getattr(args, f.field) for f in method.flags if getattr(args, f.field) is not None}
    if args.model is not None:
        flags["model"] = args.model
    if args.resolution is not None:
        flags["resolution"] = args.resolution
    if args.report_to is not None:
        flags["report_to"] = args.report_to
    cfg = method.with_absolute_folders(read_config(args.config, method.config, flags))  # checked before torch
    tracker = make_tracker(getattr(cfg, "report_to", "none"), args.out, Path(args.out).name,  # fails now, not later
                           cfg.to_dict())
    from ..memplan.preflight import preflight
    from ..models import load_model
    from ..training.dist import make_accelerator

    train = method.load_trainer()
    accelerator = make_accelerator()  # one process, or this process of an `accelerate launch`
    model = load_model(cfg.model, device=accelerator.device, resolution=getattr(cfg, "resolution", None))
    preflight(model, method.kind, cfg)  # an SD3.5 run that cannot fit its GPU is refused here, with the plan
    if not accelerator.is_main_process:  # the main process alone shows and records the run
        args.recorder = None
    with command_callback(args, method.kind, cfg.to_dict(), args.out) as callback:
        result = train(model, cfg, args.out, callback=CallbackList([callback, tracker]), resume=not args.no_resume,
                       accelerator=accelerator)
    print(f"{method.kind}: step {result.step}, {method.done.format(epoch=result.epoch)}"
          f"{' (stopped)' if result.stopped else ''}; adapter written to {result.adapter_dir}")


def cmd_coldstart(args: argparse.Namespace) -> None:
    from ..coldstart.config import ColdStartConfig
    from ..config.base import read_config

    flags = {k: v for k, v in (("model", args.model), ("resolution", args.resolution), ("report_to", args.report_to))
             if v is not None}
    cfg = read_config(args.config, ColdStartConfig, flags or None)
    tracker = make_tracker(cfg.report_to, args.out, Path(args.out).name, cfg.to_dict())
    import torch

    from ..coldstart.trainer import run_coldstart
    from ..memplan.preflight import preflight
    from ..models import load_model

    model = load_model(cfg.model, device="cuda" if torch.cuda.is_available() else "cpu", resolution=cfg.resolution)
    preflight(model, "coldstart", cfg)
    with command_callback(args, "coldstart", cfg.to_dict(), args.out) as callback:
        out = run_coldstart(model, cfg, args.out, callback=CallbackList([callback, tracker]))
    print(f"coldstart {cfg.mode}: adapter written to {out}")


def _add(sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], None], help_text: str,
         example: str, out_help: str, config_help: str | None = None) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text, epilog=f"example: {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    if config_help is None:
        p.add_argument("--config", required=True, help="JSON file of config fields (`flowopd config KIND` lists "
                                                       "them); unknown keys fail")
    else:
        p.add_argument("--config", help=config_help)
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--model", help="base model folder or Hub id; overrides the config's model (default: built-in tiny)")
    p.add_argument("--report-to", choices=REPORT_TARGETS, help="also send metrics and samples to TensorBoard (event "
                                                            "files in OUT/trackers) or wandb; overrides the config's "
                                                            "report_to (default: none)")
    p.add_argument("--resolution", type=int, help="image side in pixels of an SD3 base; overrides the config's "
                                                  "(default: 512 for SD3.5 Medium, 1024 for Large and SD3)")
    return p


def _out_help(outputs: tuple[str, ...]) -> str:
    from ..layout import ADAPTER_DIR, CHECKPOINT_DIR

    what = {CHECKPOINT_DIR: "(resumable)", ADAPTER_DIR: "(the trained LoRA)"}
    return "output folder: " + ", ".join(f"OUT/{o} {what.get(o, '(its config)')}" for o in outputs)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train <method>`` for every registered method, and ``coldstart``, to the ``flowopd`` parser."""
    from .registry import methods

    known = methods()
    about = f"Train a teacher or distil the student: {', '.join(known)}."
    train = subparsers.add_parser("train", help=about, description=about)
    tsub = train.add_subparsers(dest="train_command", required=True, metavar="COMMAND")
    for method in known.values():
        config_help = (f"JSON file of {method.config.__name__} fields (`flowopd config {method.kind}`); the flags "
                       "override it") if method.flags else None
        p = _add(tsub, method.kind, cmd_train, method.summary, method.example, _out_help(method.outputs), config_help)
        p.set_defaults(stage=method.kind)
        for flag in method.flags:
            info = method.config.field_info(flag.field)
            text = info.help + (f" (default {info.default})" if flag.type is not str else
                                f" (overrides the config's {flag.field})")
            p.add_argument(flag.option, dest=flag.field, type=flag.type, help=text.replace("%", "%%"))
        p.add_argument("--no-resume", action="store_true", help="start over even if OUT holds a checkpoint")
    _add(subparsers, "coldstart", cmd_coldstart, "Build the student's first LoRA from the teachers: merge, "
         "merge-avg, sft or none.", COLDSTART_EXAMPLE,
         out_help="output folder: OUT/adapter (the student's LoRA) and OUT/coldstart.json (not resumable: a merge "
                  "takes seconds, an SFT reruns)")
