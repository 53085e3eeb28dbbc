"""What RL can reach at this size: best-of-K of the base model per test prompt, and the reward signal inside
a group (issue 27 item 4).

For each task and guidance, K ODE samples per test prompt (seeds 0..K-1, the evaluation protocol's sampler)
are scored by the task's training reward (and, for compose, by the strict GenEval correctness the metric
averages). Per task it reports the base's mean, the best-of-4 and best-of-K means (the ceiling a policy that
always drew its best group member would reach), the mean within-prompt std of the reward (the signal a
group advantage sees) and the fraction of prompts whose K rewards are all equal (groups with no signal).

    python benchmarks/reward_ceiling.py --out docs/notes/reward-ceiling --k 16 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def measure(model, task: str, guidance: float, k: int, steps: int, limit: int | None) -> dict:
    from flowopd.evaluate import eval_records
    from flowopd.rewards import compose_correct, get_reward
    from flowopd.sampling import generate

    records = eval_records(task, limit)
    prompts = [r["prompt"] for r in records]
    reward = get_reward(task)
    scores = np.zeros((len(records), k))
    correct = np.zeros((len(records), k))
    for j in range(k):  # one seed for every prompt at a time: the protocol's batch
        images = generate(model, prompts, seeds=[1000 * j + i for i in range(len(prompts))], num_steps=steps,
                          guidance=guidance)
        scores[:, j] = reward(images, prompts, records)
        if task == "compose":
            correct[:, j] = compose_correct(images, prompts, records)
    out = {"prompts": len(records), "k": k, "guidance": guidance}
    for name, table in (("reward", scores), *((("correct", correct),) if task == "compose" else ())):
        out[name] = {"mean": float(table.mean()), "best_of_4": float(table[:, :4].max(1).mean()),
                     f"best_of_{k}": float(table.max(1).mean()),
                     "within_prompt_std": float(table.std(1).mean()),
                     "across_prompt_std": float(table.mean(1).std()),
                     "zero_std_groups_of_4": float(np.mean([np.ptp(table[i, g:g + 4]) == 0 for i in range(len(table))
                                                            for g in range(0, k - 3, 4)]))}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="writes OUT.json (and prints a table)")
    p.add_argument("--k", type=int, default=16, help="samples per prompt (default 16)")
    p.add_argument("--steps", type=int, default=20, help="ODE steps (the protocol's 20)")
    p.add_argument("--limit", type=int, default=None, help="first N test prompts per task (default: all)")
    p.add_argument("--tasks", default="compose,text,prefer,quality")
    p.add_argument("--guidance", default="1.0,3.0", help="comma-separated guidance scales")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = p.parse_args()
    import torch

    from flowopd.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(None)
    rows, path = [], Path(args.out).with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    for task in args.tasks.split(","):
        for guidance in (float(g) for g in args.guidance.split(",")):
            start = time.perf_counter()
            row = {"task": task, **measure(model, task, guidance, args.k, args.steps, args.limit),
                   "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            path.write_text(json.dumps({"k": args.k, "steps": args.steps, "rows": rows}, indent=1) + "\n")
            r = row["reward"]
            print(f"{task:8s} cfg {guidance:3.1f}: mean {r['mean']:.3f} best-of-4 {r['best_of_4']:.3f} "
                  f"best-of-{args.k} {r[f'best_of_{args.k}']:.3f} within-std {r['within_prompt_std']:.3f} "
                  f"zero-std groups {r['zero_std_groups_of_4']:.2f} ({row['seconds']} s)", flush=True)


if __name__ == "__main__":
    main()
