"""Rerun the cold start and distillation of a finished benchmark seed with some teachers swapped.

Usage::

    python benchmarks/experiments/swap_teachers.py RUN SEED --teacher prefer=runs/tune/P4-prefer-0/checkpoint/adapter \
        --out runs/swap/seed0 [--teacher quality=...] [--opd-epochs 32]

Takes seed SEED of a ``flowopd reproduce --out RUN`` folder, replaces the named teachers' adapter folders,
and reruns ``coldstart-merge`` (the exact merge) and ``opd`` (merge init, with MAR) with the configs the
benchmark used, every other field unchanged (the same seed, so the same prompts and noise). Each stage runs
as the benchmark runs it (:func:`flowopd.reproduce.stage.run_stage`: ``OUT/<stage>/train.json`` and
``result.json``, the benchmark's evaluation protocol); a stage with a result is skipped, so an interrupted
run continues. ``--opd-epochs N`` (more than the benchmark's) adds a stage
``opd-<N>ep`` that continues ``opd`` from its last checkpoint to N epochs. It answers how much a stronger
teacher carries through the merge and the distillation without rerunning the rest of the plan. Run with
``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from flowopd.coldstart.config import ColdStartConfig
from flowopd.layout import ADAPTER_DIR, CHECKPOINT_DIR
from flowopd.methods.opd.config import OPDConfig
from flowopd.reproduce.config import ReproduceConfig
from flowopd.reproduce.plan import StageSpec
from flowopd.reproduce.stage import run_stage
from flowopd.training.dist import make_accelerator
from flowopd.world.prompts import TASKS


def parse_teachers(items: list[str]) -> dict[str, str]:
    """``["prefer=PATH", ...]`` -> ``{"prefer": "PATH"}``, checking the task and the folder."""
    out = {}
    for item in items:
        task, sep, folder = item.partition("=")
        if not sep or task not in TASKS:
            raise SystemExit(f"--teacher {item!r} is invalid: use TASK=ADAPTER_FOLDER with TASK one of {TASKS}")
        if not Path(folder).is_dir():
            raise SystemExit(f"--teacher {item!r}: {folder} is not a folder (an adapter folder is needed)")
        out[task] = folder
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a finished flowopd reproduce --out folder")
    p.add_argument("seed", type=int, help="the seed whose stages are rerun")
    p.add_argument("--teacher", action="append", default=[], help="TASK=ADAPTER_FOLDER (repeat for several)")
    p.add_argument("--out", type=Path, required=True, help="folder for the rerun stages")
    p.add_argument("--opd-epochs", type=int, help="also continue opd from its checkpoint to this many epochs")
    args = p.parse_args()
    torch.set_num_threads(1)
    swapped = parse_teachers(args.teacher)
    if not swapped:
        raise SystemExit("give at least one --teacher TASK=ADAPTER_FOLDER")
    cfg = ReproduceConfig.from_json(args.run / "config.json")
    seed_dir = args.run / f"seed{args.seed}"
    merge_cfg = ColdStartConfig.from_json(seed_dir / "coldstart-merge" / "coldstart.json")
    opd_cfg = json.loads((seed_dir / "opd" / "train.json").read_text())["config"]
    teachers = {**merge_cfg.teachers, **swapped}
    merge_cfg = ColdStartConfig.from_dict({**merge_cfg.to_dict(), "teachers": teachers})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "swap.json").write_text(json.dumps({"run": str(args.run), "seed": args.seed,
                                                    "teachers": teachers}, indent=1))
    accelerator = make_accelerator()

    def run(name: str, kind: str, config) -> dict:
        return run_stage(StageSpec(name, kind, config), args.out, cfg, accelerator, args.seed)

    results = [run("coldstart-merge", "coldstart", merge_cfg)]
    init = str(args.out / "coldstart-merge" / ADAPTER_DIR)
    opd = OPDConfig.from_dict({**opd_cfg, "teachers": teachers, "init": init})
    results.append(run("opd", "opd", opd))
    if args.opd_epochs is not None:
        if args.opd_epochs <= opd.epochs:
            raise SystemExit(f"--opd-epochs {args.opd_epochs} is invalid: use more than the benchmark's {opd.epochs}")
        longer = f"opd-{args.opd_epochs}ep"
        if not (args.out / longer / CHECKPOINT_DIR).is_dir():  # start from opd's last step, not from the merge
            shutil.copytree(args.out / "opd" / CHECKPOINT_DIR, args.out / longer / CHECKPOINT_DIR)
        results.append(run(longer, "opd", OPDConfig.from_dict({**opd.to_dict(), "epochs": args.opd_epochs})))
    for r in results:
        print(r["stage"], json.dumps({k: round(v, 4) for k, v in r["metrics"].items()}), flush=True)


if __name__ == "__main__":
    main()
