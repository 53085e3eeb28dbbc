"""AWM's released recipe against the project's earlier one (issue 27 item 2): the strong budget's AWM teacher of a
task (``flowopd reproduce --budget strong``'s plan, the same config per seed) trained twice, as planned and with
``AWMConfig.released()``'s fields on top, then evaluated with the fixed protocol (each at its own guidance, 1.0).

    python benchmarks/awm_recipe.py --task prefer --seeds 0 1 2 --work runs/awm-recipe \\
        --out docs/notes/awm-recipe.json --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

RELEASED = ("weighting", "ghuber_power", "advantage_max", "ema_weight", "ema_target_decay", "ema_target_schedule",
            "first_level", "level_fraction", "ref_weight")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="prefer", help="a task whose strong-budget teacher is AWM (prefer, quality)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--work", default="runs/awm-recipe")
    p.add_argument("--out", default="docs/notes/awm-recipe.json")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = p.parse_args()
    import torch

    from flowopd.evaluate import evaluate_adapter
    from flowopd.methods import get_method
    from flowopd.methods.awm.config import AWMConfig
    from flowopd.models import load_model
    from flowopd.reproduce.config import ReproduceConfig
    from flowopd.reproduce.plan import build_plan

    if args.threads:
        torch.set_num_threads(args.threads)
    work, out = Path(args.work), Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = load_model(None)
    report = {"task": args.task, "seeds": args.seeds, "released_fields": list(RELEASED), "base": None, "runs": []}
    report["base"] = evaluate_adapter(model, None)["metrics"]
    for seed in args.seeds:
        spec = next(s for s in build_plan(ReproduceConfig.preset("strong"), seed, work / f"seed{seed}")
                    if s.name == f"teacher-{args.task}")
        if spec.kind != "awm":
            raise SystemExit(f"the strong budget's {args.task} teacher is {spec.kind}, not awm: pick another task")
        released = AWMConfig.released(rewards=spec.config.rewards)
        recipes = {"today": spec.config,
                   "released": dataclasses.replace(spec.config, **{k: getattr(released, k) for k in RELEASED})}
        for name, cfg in recipes.items():
            folder = work / f"seed{seed}" / name
            torch.manual_seed(seed)
            start = time.perf_counter()
            result = get_method("awm").load_trainer()(model, cfg, folder, resume=True)
            metrics = evaluate_adapter(model, result.adapter_dir, merged=True)["metrics"]
            report["runs"].append({"recipe": name, "seed": seed, "steps": result.step, "metrics": metrics,
                                   "train_s": round(time.perf_counter() - start, 1)})
            out.write_text(json.dumps(report, indent=1) + "\n")
            print(name, seed, json.dumps(metrics), flush=True)
    summary = {}
    for name in ("today", "released"):
        rows = [r["metrics"] for r in report["runs"] if r["recipe"] == name]
        summary[name] = {t: (statistics.fmean(r[t] for r in rows),
                             statistics.stdev(r[t] for r in rows) if len(rows) > 1 else None) for t in rows[0]}
    report["summary"] = summary
    out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
