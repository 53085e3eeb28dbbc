"""Evaluate the live (last-step) weights of finished reproduce stages against their EMA weights.

Usage::

    python benchmarks/experiments/ema_vs_live.py OUT [--stages teacher-text,teacher-prefer] [--all-tasks]

A trainer with ``ema`` on exports the EMA of its LoRA as the stage's adapter (what ``result.json`` scores
and what later stages load), and keeps the live weights of its last step in ``checkpoint/adapter``. For each
seed and stage that has both, this evaluates the live weights with the benchmark's protocol (same seeds,
so paired with ``result.json``) on the stage's own task (``teacher-<task>``) or on all four tasks
(other stages, or ``--all-tasks``), prints live minus EMA, and adds the rows to ``OUT/ema_vs_live.json``. It also
reports ``|dW|`` (the Frobenius norm of the LoRA's weight delta B A over all layers) of both.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from safetensors.torch import load_file

from flowopd.layout import RESULT_FILE, adapter_dir, checkpoint_dir
from flowopd.models import load_model
from flowopd.reproduce.config import ReproduceConfig
from flowopd.reproduce.evaluation import row_metrics
from flowopd.reproduce.stage import eval_config
from flowopd.world.prompts import TASKS

WEIGHTS = "pytorch_lora_weights.safetensors"


def delta_norm(adapter: Path) -> float:
    """Frobenius norm of the LoRA weight deltas ``B @ A`` over all layers (alpha / r scaling left out)."""
    sd = load_file(str(adapter / WEIGHTS))
    total = 0.0
    for key, a in sd.items():
        if "lora_A" in key:
            total += float(((sd[key.replace("lora_A", "lora_B")].float() @ a.float()) ** 2).sum())
    return total ** 0.5


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="a flowopd reproduce --out folder")
    p.add_argument("--stages", default=",".join(f"teacher-{t}" for t in TASKS), help="comma-separated stage names")
    p.add_argument("--all-tasks", action="store_true", help="evaluate every stage on all four tasks")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = ReproduceConfig.from_json(args.out / "config.json")
    model = load_model(cfg.model)  # row_metrics loads each adapter and drops it again
    rows = []
    for stage in args.stages.split(","):
        own = stage.removeprefix("teacher-")
        tasks = [own] if own in TASKS and not args.all_tasks else list(TASKS)
        for seed_dir in sorted(args.out.glob("seed*")):
            folder = seed_dir / stage
            live, result = adapter_dir(checkpoint_dir(folder)), folder / RESULT_FILE
            if not (live.is_dir() and result.is_file()):
                continue
            ema = json.loads(result.read_text())["metrics"]
            protocol = eval_config(cfg)
            protocol.tasks = tasks
            got = row_metrics(model, live, protocol)
            row = {"stage": stage, "seed": int(seed_dir.name[4:]), "tasks": tasks,
                   "ema": {t: ema[t] for t in tasks}, "live": {t: got[t] for t in tasks},
                   "dW_ema": delta_norm(adapter_dir(folder)), "dW_live": delta_norm(live)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    path = args.out / "ema_vs_live.json"  # earlier rows of other stages are kept
    done = {(r["stage"], r["seed"]) for r in rows}
    kept = [r for r in json.loads(path.read_text()) if (r["stage"], r["seed"]) not in done] if path.is_file() else []
    path.write_text(json.dumps(kept + rows, indent=1))
    for stage in dict.fromkeys(r["stage"] for r in rows):
        mine = [r for r in rows if r["stage"] == stage]
        for task in mine[0]["tasks"]:
            d = [r["live"][task] - r["ema"][task] for r in mine]
            spread = f" ± {statistics.stdev(d):.3f}" if len(d) > 1 else ""
            ratio = statistics.fmean(r["dW_ema"] / r["dW_live"] for r in mine)
            print(f"{stage} {task}: live - EMA {statistics.fmean(d):+.3f}{spread} over {len(d)} seed(s) "
                  f"(per seed {', '.join(f'{x:+.3f}' for x in d)}); |dW| EMA / live {ratio:.2f}")


if __name__ == "__main__":
    main()
