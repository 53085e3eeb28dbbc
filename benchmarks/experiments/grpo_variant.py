"""Rerun the GRPO side of one benchmark seed with another GRPO recipe, then its merge and distillation.

Usage::

    python benchmarks/experiments/grpo_variant.py --out runs/variant --seed 0 \
        --set '{"sde_window": 2, "shared_group_noise": true}' --batch-size 160 [--stages teacher-prefer,grpo-mix]

Builds seed SEED's plan of the benchmark (``--budget``, default ``default``;
:func:`flowopd.reproduce.plan.build_plan` into ``OUT/seed<k>/``), changes every GRPO stage it runs by ``--set``
(config fields) and ``--batch-size`` (images per epoch; the epochs, and so the optimizer steps, stay the
budget's), and runs ``--stages`` (default: the four teachers, ``grpo-mix``, ``coldstart-merge`` and ``opd``) as
the benchmark runs them: ``OUT/seed<k>/<stage>/result.json`` with the benchmark's evaluation protocol, and a
stage with a result is skipped, so an interrupted run continues. The merge and the distillation keep their
configs and use this run's teachers. It answers whether a better GRPO recipe changes Flow-OPD's lead over
GRPO-Mix, which the recipe improves as well. Run seeds as parallel processes with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from flowopd.methods.grpo.config import GRPOConfig
from flowopd.reproduce.config import BUDGETS, ReproduceConfig
from flowopd.reproduce.plan import build_plan
from flowopd.reproduce.stage import run_stage
from flowopd.training.dist import make_accelerator
from flowopd.world.prompts import TASKS

STAGES = (*(f"teacher-{t}" for t in TASKS), "grpo-mix", "coldstart-merge", "opd")


def variant_plan(cfg: ReproduceConfig, seed: int, seed_dir: Path, stages: list[str], overrides: dict,
                 batch_size: int | None) -> list:
    """The plan's ``stages`` with every GRPO stage's config changed by ``overrides`` and ``batch_size``."""
    plan = {spec.name: spec for spec in build_plan(cfg, seed, seed_dir)}
    unknown = [s for s in stages if s not in plan]
    if unknown:
        raise SystemExit(f"--stages {unknown} are not stages of the plan: use names from {list(plan)}")
    out = []
    for name in stages:
        spec = plan[name]
        if spec.kind == "grpo":
            fields = {**spec.config.to_dict(), **overrides}
            if batch_size is not None:
                fields["batch_size"] = batch_size
            spec = dataclasses.replace(spec, config=GRPOConfig.from_dict(fields), same_as=None)
        out.append(spec)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (OUT/seed<k>/<stage>/)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--set", default="{}", help="JSON object of GRPOConfig fields for every GRPO stage")
    p.add_argument("--batch-size", type=int, help="images per epoch of every GRPO stage (default: the budget's)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated (default: {','.join(STAGES)})")
    p.add_argument("--budget", choices=BUDGETS, default="default", help="the benchmark preset (default: default)")
    p.add_argument("--model", help="base model folder (default: the built-in tiny model)")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = ReproduceConfig.preset(args.budget, model=args.model)
    seed_dir = (args.out / f"seed{args.seed}").resolve()
    overrides = json.loads(args.set)
    plan = variant_plan(cfg, args.seed, seed_dir, args.stages.split(","), overrides, args.batch_size)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "variant.json").write_text(json.dumps({"set": overrides, "batch_size": args.batch_size,
                                                       "budget": args.budget, "model": args.model}, indent=1))
    accelerator = make_accelerator()
    for spec in plan:
        result = run_stage(spec, seed_dir, cfg, accelerator, args.seed)
        print(spec.name, json.dumps({k: round(v, 4) for k, v in (result["metrics"] or {}).items()}),
              f"{result['wall_time_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
