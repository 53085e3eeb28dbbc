"""The forward-process teachers at their own guidance (issue 27 item 1): the strong budget's NFT and AWM
teachers (seed 0 of ``flowopd reproduce --budget strong``'s plan, the same configs) trained, then evaluated with
the fixed protocol at CFG 1.0 (their own: both train CFG-free) and at CFG 3.0 (the project's earlier protocol),
beside the base at both.

    python benchmarks/guidance_reeval.py --work runs/guidance --out docs/notes/guidance-reeval.json --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="runs/guidance", help="folder of the teachers' runs")
    p.add_argument("--out", default="docs/notes/guidance-reeval.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--guidances", default="1.0,3.0")
    args = p.parse_args()
    import torch

    from flowopd.config.eval import EvalConfig
    from flowopd.evaluate import evaluate_adapter
    from flowopd.methods import get_method
    from flowopd.models import load_model
    from flowopd.reproduce.config import ReproduceConfig
    from flowopd.reproduce.plan import build_plan

    if args.threads:
        torch.set_num_threads(args.threads)
    work, out = Path(args.work), Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plan = build_plan(ReproduceConfig.preset("strong"), args.seed, work / f"seed{args.seed}")
    teachers = [s for s in plan if s.name.startswith("teacher-") and s.kind in ("nft", "awm")]
    scales = [float(g) for g in args.guidances.split(",")]
    model = load_model(None)
    report = {"seed": args.seed, "guidances": scales, "base": {}, "teachers": {}}
    for g in scales:
        report["base"][str(g)] = evaluate_adapter(model, None, EvalConfig(guidance=g))["metrics"]
    for spec in teachers:
        folder = work / f"seed{args.seed}" / spec.name
        start = time.perf_counter()
        torch.manual_seed(args.seed)
        result = get_method(spec.kind).load_trainer()(model, spec.config, folder, resume=True)
        row = {"kind": spec.kind, "train_s": round(time.perf_counter() - start, 1), "steps": result.step,
               "metrics": {}}
        for g in scales:
            row["metrics"][str(g)] = evaluate_adapter(model, result.adapter_dir, EvalConfig(guidance=g),
                                                      merged=True)["metrics"]
        report["teachers"][spec.name] = row
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(spec.name, spec.kind, json.dumps(row["metrics"]), flush=True)
    out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
