"""The distillation stages of ``reproduce --budget strong`` on the teacher benchmark's own seed-0 teachers.

Usage::

    python benchmarks/experiments/strong_pipeline.py --out runs/strong-seed0 [--work runs/teachers] \
        [--stages coldstart-merge opd awm-mix grpo-mix]

Copies the strongest teacher of each task from a ``benchmarks/teachers.py`` work folder (``WORK/<algorithm>-
<task>-0``: nft compose, sft text at half its budget (its ``snapshot-0.5``, where its quality had not dropped),
awm prefer and quality) into ``OUT/seed0/teacher-<task>/adapter`` and runs the named stages of the strong
plan for seed 0 as the benchmark runs them (:func:`flowopd.reproduce.stage.run_stage`: the exact merge,
Flow-OPD from it with MAR, and the joint ``awm-mix`` and ``grpo-mix`` at the distillation's compute), each
evaluated with the protocol. It answers the reproduction's main question (opd against the same-compute
mixes) for one seed before the whole strong plan (teachers, seesaw, long mixes) is run. Stages with a
result are skipped, so an interrupted run continues.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from flowopd.layout import ADAPTER_DIR
from flowopd.reproduce.config import ReproduceConfig
from flowopd.reproduce.plan import build_plan
from flowopd.reproduce.stage import run_stage
from flowopd.training.dist import make_accelerator

TEACHERS = {"compose": ("nft", "adapter"), "text": ("sft", "snapshot-0.5"), "prefer": ("awm", "adapter"),
            "quality": ("awm", "adapter")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--work", default="runs/teachers", help="the teacher benchmark's work folder")
    p.add_argument("--stages", nargs="+", default=["coldstart-merge", "opd", "awm-mix", "grpo-mix"])
    args = p.parse_args()
    cfg = ReproduceConfig.preset("strong")
    seed_dir = Path(args.out) / "seed0"
    for task, (algorithm, folder) in TEACHERS.items():
        target = seed_dir / f"teacher-{task}" / ADAPTER_DIR
        if not target.is_dir():
            shutil.copytree(Path(args.work) / f"{algorithm}-{task}-0" / folder, target)
    plan = {spec.name: spec for spec in build_plan(cfg, 0, seed_dir)}
    acc = make_accelerator()
    results = {}
    for name in args.stages:
        result = run_stage(plan[name], seed_dir, cfg, acc, 0)
        results[name] = {"metrics": result["metrics"], "train_time_s": result["train_time_s"],
                         "optimizer_steps": result["optimizer_steps"], "images": result["images"]}
        print(name, json.dumps(result["metrics"]), flush=True)
    (Path(args.out) / "summary.json").write_text(json.dumps({"teachers": TEACHERS, "stages": results}, indent=1))


if __name__ == "__main__":
    main()
