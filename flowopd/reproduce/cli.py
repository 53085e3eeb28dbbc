"""``flowopd reproduce``: the tiny reproduction benchmark from a terminal, with progress bars.

:func:`register` adds the command to the ``flowopd`` parser without importing torch; the handler imports
the benchmark. Bad input raises ``ValueError`` (``flowopd: error: ...``, exit status 2).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..config.base import read_config
from ..terminal import command_callback

log = logging.getLogger(__name__)
EXAMPLE = ("flowopd reproduce --out runs/reproduce --seeds 3\n"
           "  quick check of the pipeline (under a minute on the built-in model): flowopd reproduce --out /tmp/r "
           "--budget smoke\n"
           "  overrides: flowopd reproduce --out runs/r --config over.json   with over.json = "
           '{"teacher": {"epochs": 12}, "rl": {"lr": 5e-4}}\n'
           "  teachers of other sources (with the joint awm-mix baseline): flowopd reproduce --out runs/r "
           "--teachers text=sft,prefer=awm,quality=awm\n"
           "  an interrupted run continues where it stopped: run the same command again")
DESCRIPTION = ("Run the tiny reproduction benchmark: base evaluation, a teacher per task (GRPO, or the source "
               "--teachers names), GRPO-Mix and the joint <source>-mix of other sources, cold start, Flow-OPD with "
               "and without MAR (and from SFT init), the mixes with the whole pipeline's compute, and the seesaw "
               "runs (unless the budget leaves them out); writes OUT/results.json, OUT/report.md and OUT/plots/*.png.")


def parse_teachers(text: str) -> dict[str, str]:
    """``"text=sft,prefer=awm"`` -> ``{"text": "sft", "prefer": "awm"}`` (checked by ReproduceConfig).

    Example:
        >>> parse_teachers("text=sft, prefer=awm")
        {'text': 'sft', 'prefer': 'awm'}
    """
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        task, sep, source = item.partition("=")
        if not sep:
            raise ValueError(f"--teachers {text!r} is invalid: write TASK=SOURCE pairs, e.g. text=sft,prefer=awm")
        out[task.strip()] = source.strip()
    return out


def cmd_reproduce(args: argparse.Namespace) -> None:
    from .config import ReproduceConfig

    overrides = {}
    if args.budget:
        overrides["budget"] = args.budget
    if args.seeds is not None:
        overrides["seeds"] = args.seeds
    if args.teachers:
        overrides["teachers"] = parse_teachers(args.teachers)
    if args.model is not None:  # an existing folder is stored absolute: the stage configs hold it
        overrides["model"] = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    cfg = read_config(args.config, ReproduceConfig, overrides)  # checked before the benchmark (torch) loads
    from .runner import REPORT_FILE, RESULTS_FILE, reproduce
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from ..training.dist import make_accelerator

    accelerator = make_accelerator()  # one process, or this process of an `accelerate launch`
    if not accelerator.is_main_process:  # the main process alone shows and records the run
        args.recorder = None
    with command_callback(args, "reproduce", cfg.to_dict(), args.out, unit="stage") as callback:
        summary = reproduce(cfg, args.out, callback=callback, accelerator=accelerator, only_seed=args.only_seed)
    if args.only_seed is not None:
        print(f"seed {args.only_seed} done in {args.out}; when every seed is done, run the same command without "
              "--only-seed to write the report")
        return
    opd, mix = summary["rows"]["opd"], summary["rows"]["grpo-mix"]
    print(f"opd average {opd['average']:.3f}, grpo-mix {mix['average']:.3f}; "
          f"{summary['wall_time_s']['total'] / 60:.1f} min in all")
    print(f"report: {Path(args.out) / REPORT_FILE}; results: {Path(args.out) / RESULTS_FILE}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reproduce`` to the ``flowopd`` command parser."""
    p = subparsers.add_parser("reproduce", help="Run the tiny reproduction benchmark and write its report.",
                              description=DESCRIPTION, epilog=f"example: {EXAMPLE}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=cmd_reproduce)
    p.add_argument("--out", required=True, help="output folder (a re-run continues what is in it)")
    p.add_argument("--seeds", type=int, help="training seeds 0..N-1; rows get mean and std (default 1; the "
                                             "committed report uses 3)")
    p.add_argument("--budget", choices=["smoke", "default", "strong"],
                   help="smoke: seconds, for tests; default: the tiny reproduction with GRPO teachers, about 85 min "
                        "of a 2-core CPU per seed (three seeds as three --only-seed processes: about 4.3 h; more "
                        "than one session, see benchmarks/carry_run.py); strong: the strongest teacher per task "
                        "of docs/notes/teachers-tiny.md (nft, sft, awm, awm), a weighted merge init and the joint "
                        "awm-mix rows, without the seesaw rows and grpo-mix-long: three seeds as three --only-seed "
                        "processes took 108 min of a 2-core CPU (docs/results-tiny-strong-equal-merge.md)")
    p.add_argument("--model", help="base model folder (default: the built-in tiny model)")
    p.add_argument("--teachers", metavar="TASK=SOURCE,...",
                   help="teacher source per task: grpo (default), nft, awm or sft (a LoRA on the world's renders "
                        "of the task); sources other than grpo add the joint <source>-mix rows")
    p.add_argument("--config", help="JSON file of ReproduceConfig fields overriding the budget's")
    p.add_argument("--only-seed", type=int, metavar="K",
                   help="run seed K only (0 <= K < --seeds) and skip the report: seeds can run in parallel "
                        "processes on one --out; then run without it to gather them into the report")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
