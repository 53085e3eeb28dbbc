"""How much of each teacher a merged cold start keeps, by merge weight (issue 27, the init of the seesaw).

The ``merge`` cold start's default weights sum to 1 (each of four teachers at 0.25): every teacher's delta is
diluted four times. Task arithmetic adds them at a larger scale instead. This script merges the teachers of a
``flowopd reproduce --budget strong`` folder (``--from``, its ``seed<k>/``) at each weight of ``--weights``
(one weight for every teacher, ``TASK=W,...`` for per-task weights, or ``gain`` for the cold start's
``merge_weighting`` gain, which measures them), evaluates each merge with the
benchmark's protocol, and writes each one's metrics and per-task retention as JSON.

    python benchmarks/merge_scale.py --from runs/strong --seed 0 --weights 0.25 0.5 1.0 --out merge-scale.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

TASKS = ("compose", "text", "prefer", "quality")


def parse_weights(text: str) -> dict[str, float]:
    """``0.5`` -> every task at 0.5; ``text=1,prefer=0.5`` -> those tasks (the rest at 0)."""
    if text == "gain":
        return {}
    if "=" not in text:
        return dict.fromkeys(TASKS, float(text))
    pairs = dict(item.split("=", 1) for item in text.split(","))
    bad = sorted(set(pairs) - set(TASKS))
    if bad:
        raise SystemExit(f"--weights {text!r}: unknown tasks {bad}; use {', '.join(TASKS)}")
    return {t: float(w) for t, w in pairs.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", required=True, help="a flowopd reproduce --budget strong folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", nargs="+", default=["0.25", "0.5", "1.0"])
    p.add_argument("--work", default="runs/merge-scale")
    p.add_argument("--out", default="docs/notes/merge-scale.json")
    args = p.parse_args()

    from flowopd.coldstart.config import ColdStartConfig
    from flowopd.coldstart.trainer import run_coldstart
    from flowopd.models import load_model
    from flowopd.reproduce.config import ReproduceConfig
    from flowopd.reproduce.evaluation import row_metrics
    from flowopd.reproduce.retention import retention
    from flowopd.reproduce.stage import eval_config

    cfg = ReproduceConfig.preset("strong")
    seed_dir, base_dir = Path(args.source) / f"seed{args.seed}", Path(args.source) / "seed0"
    teachers = {t: str(seed_dir / f"teacher-{t}" / "adapter") for t in TASKS}
    metrics = {n: json.loads(((base_dir if n == "base" else seed_dir) / n / "result.json").read_text())["metrics"]
               for n in ("base", *(f"teacher-{t}" for t in TASKS))}
    out = Path(args.out)
    report = {"seed": args.seed, "source": str(seed_dir), "teachers": metrics, "merges": {}}
    for text in args.weights:
        weights = parse_weights(text)
        chosen = {t: f for t, f in teachers.items() if weights.get(t, 0) > 0} if weights else teachers
        start, seen = time.perf_counter(), []
        model = load_model(cfg.model)
        folder = run_coldstart(model, ColdStartConfig(mode="merge", teachers=chosen, seed=args.seed,
                                                      weights={t: weights[t] for t in chosen} if weights else {},
                                                      merge_weighting="gain" if not weights else "equal"),
                               Path(args.work) / f"seed{args.seed}" / text.replace(",", "_"), callback=seen.append)
        weights = weights or {t: v for m in seen for k, v in m.items() if k.startswith("merge_weight/")
                              for t in [k.split("/", 1)[1]]}
        row = row_metrics(load_model(cfg.model), folder, eval_config(cfg), cfg.eval_limit, cfg.eval_merged)
        keep = {t: retention(row[t], metrics[f"teacher-{t}"][t], metrics["base"][t]) for t in TASKS}
        report["merges"][text] = {"weights": weights, "metrics": row, "retention": keep,
                                  "seconds": round(time.perf_counter() - start, 1)}
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(text, json.dumps({k: round(v, 3) for k, v in row.items()}),
              json.dumps({k: None if v is None else round(v, 2) for k, v in keep.items()}), flush=True)


if __name__ == "__main__":
    main()
