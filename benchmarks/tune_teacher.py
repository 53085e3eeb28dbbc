"""Train one GRPO teacher and evaluate it on its own task: the harness behind docs/notes/grpo-tuning.md.

Usage::

    python benchmarks/tune_teacher.py NAME TASK SEED '{"lr": 1e-3, "group_size": 4}' [--out runs/tune]

Trains ``GRPOConfig(rewards={TASK: 1}, prompt_tasks={TASK: 1}, seed=SEED, epochs=8, **OVERRIDES)`` on the
built-in model, evaluates the exported adapter (the EMA unless ``"ema": false``) on TASK's full test split
(the protocol's prompts and seeds, so rows are paired with the base), and with the EMA on also the live
last-step weights (``checkpoint/adapter``), and appends ``{name, task, seed, over, metric, metric_live,
train_s, reward, clip}`` to ``OUT/results.jsonl``. Run two at a time with ``OMP_NUM_THREADS=1`` on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from flowopd.evaluate import EvalConfig, evaluate_adapter
from flowopd.layout import ADAPTER_DIR
from flowopd.methods.grpo.config import GRPOConfig
from flowopd.methods.grpo.trainer import train_grpo
from flowopd.models import load_model


def own_metric(adapter: Path, task: str) -> float:
    """The adapter's metric on ``task``'s full test split with the protocol's seeds (paired with the base)."""
    return evaluate_adapter(load_model(), adapter, EvalConfig(tasks=[task]))["metrics"][task]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name"), p.add_argument("task"), p.add_argument("seed", type=int)
    p.add_argument("overrides", help="JSON object of GRPOConfig fields")
    p.add_argument("--out", default="runs/tune")
    args = p.parse_args()
    torch.set_num_threads(1)
    over = json.loads(args.overrides)
    cfg = GRPOConfig.from_dict({"rewards": {args.task: 1.0}, "prompt_tasks": {args.task: 1.0}, "epochs": 8,
                                "checkpoint_every": 1000, "sample_every": 0, "seed": args.seed, **over})
    out = Path(args.out)
    start, curve = time.time(), []
    result = train_grpo(load_model(), cfg, out / f"{args.name}-{args.task}-{args.seed}", callback=curve.append,
                        resume=False)
    train_s = time.time() - start
    metric = own_metric(result.adapter_dir, args.task)
    live = result.checkpoint_dir / ADAPTER_DIR if result.checkpoint_dir is not None else None
    row = {"name": args.name, "task": args.task, "seed": args.seed, "over": over, "metric": metric, "train_s": train_s,
           "reward": [round(c["reward/total"], 3) for c in curve], "clip": [round(c["clip_frac"], 2) for c in curve]}
    if cfg.ema and live is not None and live.is_dir():  # the EMA is what is exported; the live weights may be better
        row["metric_live"] = own_metric(live, args.task)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(row)


if __name__ == "__main__":
    main()
