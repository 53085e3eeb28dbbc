"""How far apart adapters are in function space: the mean squared difference of their guided velocities.

Usage::

    python benchmarks/experiments/function_distance.py SEED_DIR [--prompts 8]

For each task, on the base model's 10-step ODE trajectories of the first test prompts, prints the mean over
the first 8 steps of ``(v_a - v_b)^2`` for: the task's teacher vs the base, the merge cold start vs the base
and vs the teacher, and ``opd`` vs the teacher and vs the base (SEED_DIR is ``OUT/seed<k>`` of a
``flowopd reproduce`` run; missing stages are skipped). The numbers of docs/notes/opd-tuning.md come from it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from flowopd.adapters import load_adapter, use_adapter
from flowopd.layout import adapter_dir
from flowopd.models import load_model
from flowopd.sampling import sample
from flowopd.world.prompts import TASKS
from flowopd.world.splits import load_prompts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("seed_dir", type=Path)
    p.add_argument("--prompts", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = load_model()
    stages = {"merge": "coldstart-merge", "opd": "opd", **{f"T_{t}": f"teacher-{t}" for t in TASKS}}
    names = [n for n, stage in stages.items() if adapter_dir(args.seed_dir / stage).is_dir()]
    for name in names:
        load_adapter(model, adapter_dir(args.seed_dir / stages[name]), name)
    with torch.no_grad():
        for task in TASKS:
            records = load_prompts(task, "test")[:args.prompts]
            cond, uncond = model.encode_prompts([r["prompt"] for r in records]), model.uncond_embeds(len(records))
            traj = sample(model, cond, seeds=list(range(len(records))), num_steps=10, guidance=3.0, uncond=uncond)
            v = {}
            for name in [None, *names]:
                with use_adapter(model, name):
                    v[name or "base"] = torch.stack([model.velocity(traj.latents[:, j], traj.sigmas[j], cond, uncond,
                                                                    3.0) for j in range(8)])
            teacher = f"T_{task}"
            pairs = [(teacher, "base"), ("merge", "base"), ("merge", teacher), ("opd", teacher), ("opd", "base")]
            print(task, "  ".join(f"{a.replace(teacher, 'teacher')}-{b.replace(teacher, 'teacher')} "
                                  f"{float(((v[a] - v[b]) ** 2).mean()):.2e}" for a, b in pairs if a in v and b in v))


if __name__ == "__main__":
    main()
