"""The strong plan's SFT ``text`` teacher with prior preservation, against the same teacher without it.

Usage::

    python benchmarks/experiments/sft_prior.py --out runs/sft-prior --control runs/strong \
        [--seeds 0 1] [--weights 1 10] [--reg-images 512]

Writes a regularization set once (``OUT/reg``: the base model's own ODE samples of compose, prefer and
quality train prompts in turn, ``flowopd world dataset --source model``), then for each seed and weight runs
the ``teacher-text`` stage of ``reproduce --budget strong`` (the same SFT config, image set
``CONTROL/data/text`` and seed) with ``reg_data`` and ``prior_weight`` added, into
``OUT/w<weight>/seed<k>/teacher-text``, evaluated with the protocol (merged). Prints each run's metrics
beside the control's (``CONTROL/seed<k>/teacher-text/result.json``, the strong reproduction's own teacher)
and writes them to ``OUT/summary.json``. Finished runs are skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flowopd.reproduce.config import ReproduceConfig
from flowopd.reproduce.plan import build_plan
from flowopd.reproduce.stage import run_stage
from flowopd.training.dist import make_accelerator
from flowopd.world.dataset import METADATA_FILE, write_dataset

METRICS = ("compose", "text", "prefer", "quality", "average")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--control", required=True, help="a strong reproduce folder (its data/text and teacher rows)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--weights", type=float, nargs="+", default=[1.0, 10.0])
    p.add_argument("--reg-images", type=int, default=512)
    args = p.parse_args()
    out, control = Path(args.out).resolve(), Path(args.control).resolve()
    reg = out / "reg"
    if not (reg / METADATA_FILE).is_file():
        from flowopd.models import load_model

        write_dataset("compose,prefer,quality", args.reg_images, reg, model=load_model())
    acc, summary = make_accelerator(), {}
    for weight in args.weights:
        for seed in args.seeds:
            cfg = ReproduceConfig.preset("strong", sft={"reg_data": str(reg), "prior_weight": weight})
            seed_dir = out / f"w{weight:g}" / f"seed{seed}"
            (seed_dir.parent / "data").mkdir(parents=True, exist_ok=True)
            if not (seed_dir.parent / "data" / "text").exists():  # the control's image set, not a new one
                (seed_dir.parent / "data" / "text").symlink_to(control / "data" / "text")
            spec = next(s for s in build_plan(cfg, seed, seed_dir) if s.name == "teacher-text")
            result = run_stage(spec, seed_dir, cfg, acc, seed)
            base = json.loads((control / f"seed{seed}" / "teacher-text" / "result.json").read_text())["metrics"]
            summary[f"w{weight:g}/seed{seed}"] = {"prior": result["metrics"], "control": base,
                                                  "train_time_s": result["train_time_s"]}
            print(f"weight {weight:g} seed {seed}: " + "  ".join(
                f"{m} {result['metrics'][m]:.3f} ({result['metrics'][m] - base[m]:+.3f})" for m in METRICS),
                flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
