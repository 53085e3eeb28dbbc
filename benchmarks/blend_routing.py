"""Blended routing against one-hot routing on mixed prompts: the harness behind docs/notes/blend-routing.md.

Usage::

    python benchmarks/blend_routing.py [--epochs 16] [--seed 0] [--mixed-weight 2] [--standard]
                                       [--teachers '{"compose": DIR, ...}'] [--init DIR] [--out runs/blend]

From the merge cold start (default: the built-in example ``flowopd_studio/examples/coldstart-merge``), two
Flow-OPD students are trained with the shipped example student's recipe (its config in
``flowopd_studio/examples/examples.json``: 64 images an epoch in groups of 4, lr 1e-4, MAR 0.02, EMA) from the
same seed on the same prompt mix, the four tasks' train prompts plus the mixed split's (``--mixed-weight``
against 1 for each task), once with ``per-sample`` routing (a mixed prompt goes one-hot to its highest-weight
task's teacher: compose for the split's even compose/text mixes) and once with ``blend`` (its target mixes
the compose and text teachers' velocities 0.5/0.5). Same prompts, same noise: only the mixed prompts' targets
differ. Both students, the cold start, the base and the compose and text teachers are evaluated on the
mixed test split with both rewards (:func:`flowopd.evaluate_mixed.evaluate_mixed`), and with ``--standard``
the students on the four standard test splits too (:func:`flowopd.evaluate.evaluate_adapter`). Writes
``OUT/blend-routing.json``; ``--docs`` writes ``docs/notes/blend-routing.json`` instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import torch

from flowopd.evaluate import EvalConfig, evaluate_adapter
from flowopd.evaluate_mixed import evaluate_mixed
from flowopd.methods.opd.config import OPDConfig
from flowopd.methods.opd.trainer import train_opd
from flowopd.models import load_model
from flowopd.world.prompts import MIXED, TASKS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "flowopd_studio" / "examples"
# The run's own choices; everything else is the example student's recipe.
OWN_FIELDS = ("teachers", "init", "prompt_tasks", "routing", "epochs", "seed", "log_rewards", "sample_every",
              "checkpoint_every", "epochs_per_task")
log = logging.getLogger("blend_routing")


def example_recipe() -> dict:
    """The shipped example student's OPD config fields (the examples' ``opd`` entry), minus its own paths. It
    was trained before ``ema_warmup`` existed, so its EMA warm-up is ``legacy`` (as docs/notes/blend-routing.json's
    figures were measured)."""
    entry = next(e for e in json.loads((EXAMPLES / "examples.json").read_text()) if e["kind"] == "student")
    names = {f.name for f in dataclasses.fields(OPDConfig)}
    recipe = {k: v for k, v in entry["config"].items() if k in names and k not in OWN_FIELDS}
    return {"ema_warmup": "legacy", **recipe} if "ema_warmup" in names else recipe


def mixed_row(adapter: str | Path | None, name: str, cfg: EvalConfig) -> dict:
    """The mixed-split metrics and rewards of the base with ``adapter`` (a folder or None) active."""
    from flowopd.adapters import replace_adapter, use_adapter

    model = load_model()
    if adapter is not None:
        replace_adapter(model, adapter, "evaluated")
    with use_adapter(model, "evaluated" if adapter is not None else None):
        report = evaluate_mixed(model, cfg, model_name=name)
    return {**report["metrics"], **{f"{task}_reward": v for task, v in report["rewards"].items()}}


def train_student(routing: str, args: argparse.Namespace, teachers: dict[str, str], out: Path) -> tuple[Path, float]:
    cfg = OPDConfig(**{**example_recipe(), "teachers": teachers, "init": str(args.init), "routing": routing,
                       "prompt_tasks": {**dict.fromkeys(TASKS, 1.0), MIXED: args.mixed_weight},
                       "epochs": args.epochs, "seed": args.seed, "log_rewards": False, "sample_every": 0,
                       "checkpoint_every": args.epochs})
    start = time.perf_counter()
    result = train_opd(load_model(), cfg, out / routing, resume=False)
    seconds = time.perf_counter() - start
    log.info("%s: %d steps in %.0f s", routing, result.step, seconds)
    return result.adapter_dir, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=16, help="OPD epochs of each student (the example's 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-weight", type=float, default=2.0, help="sampling weight of the mixed prompts (1 a task)")
    p.add_argument("--teachers", help="JSON task -> adapter folder (default: the four example teachers)")
    p.add_argument("--init", type=Path, default=EXAMPLES / "coldstart-merge", help="the students' cold start")
    p.add_argument("--standard", action="store_true", help="also evaluate the students on the four test splits")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", type=Path, default=Path("runs/blend"))
    p.add_argument("--docs", action="store_true",
                   help="write docs/notes/blend-routing.json (else OUT/blend-routing.json)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    teachers = json.loads(args.teachers) if args.teachers else {t: str(EXAMPLES / f"teacher-{t}") for t in TASKS}
    eval_cfg = EvalConfig()
    report: dict = {"seed": args.seed, "epochs": args.epochs, "mixed_weight": args.mixed_weight,
                    "recipe": example_recipe(), "eval_protocol": dataclasses.asdict(eval_cfg), "mixed": {},
                    "standard": {}, "train_s": {}}
    report["mixed"]["base"] = mixed_row(None, "base", eval_cfg)
    report["mixed"]["coldstart-merge"] = mixed_row(args.init, "coldstart-merge", eval_cfg)
    for task in ("compose", "text"):
        report["mixed"][f"teacher-{task}"] = mixed_row(teachers[task], f"teacher-{task}", eval_cfg)
    for routing in ("per-sample", "blend"):
        adapter, seconds = train_student(routing, args, teachers, args.out)
        report["train_s"][routing] = round(seconds, 1)
        report["mixed"][routing] = mixed_row(adapter, routing, eval_cfg)
        if args.standard:
            std = evaluate_adapter(load_model(), adapter, eval_cfg, model_name=routing)
            report["standard"][routing] = {**std["metrics"], "average": std["average"]}
        log.info("%s: mixed %s", routing, report["mixed"][routing])
    path = ROOT / "docs" / "notes" / "blend-routing.json" if args.docs else args.out / "blend-routing.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
