"""The newcomer's first student (issue 27 item 6): the Distill tab's "whole pipeline" as the app queues it, timed
from the submit to the student, then evaluated with the fixed protocol.

The plan is :func:`flowopd_studio.services.distill.plan` of the four tasks with the chosen teacher sources and
preset; :func:`~flowopd_studio.services.distill.start` submits it to a fresh data folder, whose background workers
run it one after another exactly as under the app (the app itself is not needed: each worker starts the next
queued run when it ends). The clock is wall time from the submit to the distillation's end; the evaluation is
``flowopd eval``'s protocol (every test prompt, fixed seeds, 20 ODE steps), the student at its own guidance and
the base at the student's, so the two compare.

``--quick KIND.FIELD=VALUE`` (repeatable) changes the quick preset's fields for this run (a tuning probe, e.g.
``--quick opd.epochs=12``); the report records them. Append one line per run to ``--out`` (JSON lines).

    python benchmarks/quick_pipeline.py --out docs/notes/quick-pipeline.jsonl --label default
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def parse_quick(items: list[str]) -> dict[str, dict]:
    """``["opd.epochs=12", "sft.lr=1e-3"]`` -> ``{"opd": {"epochs": 12}, "sft": {"lr": 0.001}}`` (JSON values)."""
    out: dict[str, dict] = {}
    for item in items:
        key, _, value = item.partition("=")
        kind, _, field = key.partition(".")
        if not (kind and field and value):
            raise SystemExit(f"--quick {item!r}: use KIND.FIELD=VALUE, e.g. opd.epochs=12")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(kind, {})[field] = parsed
    return out


def wait_for(store, run_ids: list[str], poll_s: float = 2.0) -> dict[str, dict]:
    """Block until every run has ended; returns run id -> {name, stage, status, seconds, error}."""
    from flowopd_studio.storage.records import TERMINAL

    while True:
        runs = [store.get_run(r) for r in run_ids]
        if all(r.status in TERMINAL for r in runs):
            return {r.id: {"name": r.name, "stage": r.stage, "status": r.status, "error": r.error,
                           "seconds": (r.ended_at or 0) - (r.started_at or 0)} for r in runs}
        time.sleep(poll_s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/notes/quick-pipeline.jsonl", help="JSON lines file to append to")
    p.add_argument("--label", default="", help="a name for this run in the report")
    p.add_argument("--sources", default="strongest", help="strongest | grpo | nft | awm")
    p.add_argument("--tasks", nargs="+", default=None, help="tasks to train a teacher for (default: all four)")
    p.add_argument("--quick", action="append", default=[], metavar="KIND.FIELD=VALUE")
    p.add_argument("--home", default=None, help="data folder (default: a new temporary one)")
    p.add_argument("--eval-limit", type=int, default=None, help="first N test prompts per task (default: all)")
    p.add_argument("--no-base", action="store_true", help="skip the base's evaluation (reuse an earlier line's)")
    args = p.parse_args()

    from flowopd.config.presets import QUICK_FIELDS
    from flowopd.world.prompts import TASKS
    from flowopd_studio.services import base_models, distill
    from flowopd_studio.storage.store import Store

    overrides = parse_quick(args.quick)
    for kind, fields in overrides.items():
        QUICK_FIELDS.setdefault(kind, {}).update(fields)
    home = Path(args.home or tempfile.mkdtemp(prefix="quick-pipeline-"))
    tasks = tuple(args.tasks or TASKS)
    with Store(home) as store:
        base = base_models.current_base(store, None)
        choice = distill.DistillChoice(name="student", teachers={}, train_tasks=tasks, sources=args.sources)
        plan = distill.plan(store, choice, base)
        start = time.time()
        runs = distill.start(store, plan, base)
        stages = wait_for(store, [r.id for r in runs])
        wall = time.time() - start
        student = store.run_dir(runs[-1].id) / "adapter"
    failed = [s for s in stages.values() if s["status"] != "finished"]
    row = {"label": args.label, "sources": distill.teacher_sources(args.sources, tasks, base.backend),
           "quick": overrides, "wall_s": round(wall, 1), "stages": list(stages.values()), "home": str(home)}
    if not failed:
        row.update(evaluate(student, args.eval_limit, not args.no_base))
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: v for k, v in row.items() if k != "stages"}, indent=1))


def evaluate(student: Path, limit: int | None, with_base: bool) -> dict:
    """The student's protocol metrics at its own guidance, and the base's at the same guidance."""
    import dataclasses

    from flowopd.adapters import adapter_guidance
    from flowopd.evaluate import EvalConfig, evaluate_adapter
    from flowopd.models import load_model

    model = load_model(None)
    cfg = dataclasses.replace(EvalConfig(), guidance=adapter_guidance(student, EvalConfig().base_guidance))
    out = {"guidance": cfg.guidance}
    for name, adapter in (("student", student), ("base", None)):
        if adapter is None and not with_base:
            continue
        start = time.time()
        metrics = evaluate_adapter(model, adapter, cfg, limit=limit, merged=adapter is not None)["metrics"]
        metrics = {t: round(float(v), 4) for t, v in metrics.items()}
        metrics["average"] = round(sum(metrics.values()) / len(metrics), 4)
        out[name], out[f"{name}_eval_s"] = metrics, round(time.time() - start, 1)
    return out


if __name__ == "__main__":
    main()
