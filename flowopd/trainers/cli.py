"""``flowopd train grpo|opd|nft|awm|sft`` and ``flowopd coldstart``: thin wrappers over the trainers.

:func:`register` adds the commands to the ``flowopd`` parser; it imports nothing heavy (torch, the
trainers and the model load inside the handlers). A bad config raises ``ValueError`` naming the field,
which ``flowopd.cli.main`` turns into ``flowopd: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..terminal import command_callback

log = logging.getLogger(__name__)
EXAMPLES = {
    "grpo": "flowopd train grpo --config teacher-text.json --out runs/teacher-text\n"
            'with teacher-text.json = {"rewards": {"text": 1.0}, "prompt_tasks": {"text": 1.0}, "epochs": 40}\n'
            "on 4 GPUs: accelerate launch --num_processes 4 -m flowopd train grpo --config ... --out ...",
    "opd": "flowopd train opd --config opd.json --out runs/opd\n"
           'with opd.json = {"teachers": {"compose": "runs/teacher-compose/adapter", "text": '
           '"runs/teacher-text/adapter"}, "prompt_tasks": {"compose": 1.0, "text": 1.0}, '
           '"init": "runs/merge/adapter"}',
    "sft": "flowopd train sft --data data/text --out runs/sft-text --steps 600\n"
           "with data/text from: flowopd world dataset --task text --n 256 --out data/text\n"
           "keeping the base elsewhere (prior preservation): add --reg-data data/reg, with data/reg from\n"
           "  flowopd world dataset --task compose,prefer,quality --n 256 --source model --out data/reg",
    "nft": "flowopd train nft --config nft-prefer.json --out runs/nft-prefer\n"
           'with nft-prefer.json = {"rewards": {"prefer": 1.0}, "prompt_tasks": {"prefer": 1.0}, "epochs": 8}',
    "awm": "flowopd train awm --config awm-prefer.json --out runs/awm-prefer\n"
           'with awm-prefer.json = {"rewards": {"prefer": 1.0}, "prompt_tasks": {"prefer": 1.0}, "epochs": 8}',
    "coldstart": "flowopd coldstart --config merge.json --out runs/merge\n"
                 'with merge.json = {"mode": "merge", "teachers": {"compose": "runs/teacher-compose/adapter", '
                 '"text": "runs/teacher-text/adapter"}}',
}


def _config(kind: str, path: str, model: str | None) -> Any:
    """The checked config (``--model`` overrides its model); imports no torch, so bad input fails fast."""
    from ..config_base import config_class, read_config

    return read_config(path, config_class(kind), {"model": model} if model is not None else None)


def cmd_train(args: argparse.Namespace) -> None:
    cfg = _config(args.stage, args.config, args.model)
    from ..models import load_model
    from .dist import make_accelerator

    if args.stage == "grpo":
        from .grpo import train_grpo as train
    elif args.stage == "nft":
        from .nft import train_nft as train
    elif args.stage == "awm":
        from .awm import train_awm as train
    else:
        from .opd import train_opd as train
    accelerator = make_accelerator()  # one process, or this process of an `accelerate launch`
    model = load_model(cfg.model, device=accelerator.device)
    if not accelerator.is_main_process:  # the main process alone shows and records the run
        args.recorder = None
    with command_callback(args, args.stage, cfg.to_dict(), args.out) as callback:
        result = train(model, cfg, args.out, callback=callback, resume=not args.no_resume, accelerator=accelerator)
    print(f"{args.stage}: step {result.step}, epoch {result.epoch}{' (stopped)' if result.stopped else ''}; "
          f"adapter written to {result.adapter_dir}")


SFT_FLAGS = (("--steps", "steps", int), ("--batch-size", "batch_size", int), ("--lr", "lr", float),
             ("--prior-weight", "prior_weight", float),
             ("--lora-rank", "lora_rank", int), ("--lora-alpha", "lora_alpha", float), ("--seed", "seed", int))


def cmd_sft(args: argparse.Namespace) -> None:
    from ..config_base import read_config
    from ..configs import SFTConfig

    flags = {name: getattr(args, name) for _, name, _ in SFT_FLAGS if getattr(args, name) is not None}
    flags.update({k: v for k, v in (("data", args.data), ("reg_data", args.reg_data), ("model", args.model))
                  if v is not None})
    cfg = read_config(args.config, SFTConfig, flags)  # checked before torch loads
    cfg.require_data()
    folders = {k: str(Path(getattr(cfg, k)).expanduser().resolve()) for k in ("data", "reg_data") if getattr(cfg, k)}
    cfg = SFTConfig.from_dict({**cfg.to_dict(), **folders})
    from ..models import load_model
    from .sft import train_sft

    model = load_model(cfg.model, device="cuda" if _cuda() else "cpu")
    with command_callback(args, "sft", cfg.to_dict(), args.out) as callback:
        result = train_sft(model, cfg, args.out, callback=callback, resume=not args.no_resume)
    print(f"sft: step {result.step}, {result.epoch} passes over the set{' (stopped)' if result.stopped else ''}; "
          f"adapter written to {result.adapter_dir}")


def cmd_coldstart(args: argparse.Namespace) -> None:
    cfg = _config("coldstart", args.config, args.model)
    from ..models import load_model
    from .coldstart import run_coldstart

    model = load_model(cfg.model, device="cuda" if _cuda() else "cpu")
    with command_callback(args, "coldstart", cfg.to_dict(), args.out) as callback:
        out = run_coldstart(model, cfg, args.out, callback=callback)
    print(f"coldstart {cfg.mode}: adapter written to {out}")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _add(sub: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], None], help_text: str,
         example: str, out_help: str = "output folder: OUT/checkpoint (resumable) and OUT/adapter"
         ) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text, epilog=f"example: {example}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    p.add_argument("--config", required=True, help="JSON file of config fields (flowopd.configs); unknown keys fail")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--model", help="base model folder or Hub id; overrides the config's model (default: built-in tiny)")
    return p


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train grpo``, ``train opd`` and ``coldstart`` to the ``flowopd`` command parser."""
    about = "Train a GRPO, NFT, AWM or SFT teacher (or GRPO-Mix, NFT-Mix) or distil the student (OPD)."
    train = subparsers.add_parser("train", help=about, description=about)
    tsub = train.add_subparsers(dest="train_command", required=True, metavar="COMMAND")
    for stage, text in (("grpo", "Flow-GRPO on one reward (a teacher) or several with weights (GRPO-Mix)."),
                        ("opd", "On-policy distillation of the task teachers into the student, with MAR."),
                        ("nft", "DiffusionNFT on one reward (a teacher) or several with weights (NFT-Mix): ODE "
                                "rollouts, trained on the forward process."),
                        ("awm", "Advantage Weighted Matching on one reward (a teacher) or several with weights: ODE "
                                "rollouts, an advantage-weighted flow-matching loss on the policy's own samples.")):
        p = _add(tsub, stage, cmd_train, text, EXAMPLES[stage])
        p.set_defaults(stage=stage)
        p.add_argument("--no-resume", action="store_true", help="start over even if OUT holds a checkpoint")
    _register_sft(tsub)
    _add(subparsers, "coldstart", cmd_coldstart, "Build the student's first LoRA from the teachers: merge, "
         "merge-avg, sft or none.", EXAMPLES["coldstart"],
         out_help="output folder: OUT/adapter (the student's LoRA) and OUT/coldstart.json (not resumable: a merge "
                  "takes seconds, an SFT reruns)")


def _register_sft(tsub: argparse._SubParsersAction) -> None:
    """``train sft``: its config file is optional and its common fields are flags (help from SFTConfig)."""
    from ..configs import SFTConfig

    text = ("Fine-tune a LoRA with the flow-matching loss on an image set with captions: a supervised teacher "
            "(a style or subject LoRA, as kohya_ss and fluxgym train).")
    p = tsub.add_parser("sft", help=text, description=text, epilog=f"example: {EXAMPLES['sft']}",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=cmd_sft, stage="sft")
    p.add_argument("--data", help=SFTConfig.field_info("data").help + " (overrides the config's data)")
    p.add_argument("--reg-data", dest="reg_data", help=SFTConfig.field_info("reg_data").help + " (overrides the "
                   "config's reg_data)")
    p.add_argument("--config", help="JSON file of SFTConfig fields (`flowopd config sft`); the flags override it")
    p.add_argument("--out", required=True, help="output folder: OUT/checkpoint (resumable), OUT/adapter (the "
                                                "teacher) and OUT/sft.json (its config)")
    p.add_argument("--model", help="base model folder or Hub id; overrides the config's model (default: built-in tiny)")
    for flag, name, kind in SFT_FLAGS:
        info = SFTConfig.field_info(name)
        p.add_argument(flag, dest=name, type=kind, help=f"{info.help} (default {info.default})".replace("%", "%%"))
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT holds a checkpoint")
