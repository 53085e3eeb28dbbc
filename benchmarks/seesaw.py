"""The four-task seesaw inside distillation (issue 27 item 3): variants of the strong budget's ``opd`` stage from
the same teachers, seed and compute (its epochs and batch), each evaluated with the fixed protocol, with the
student's retention of each teacher's gain and, every other epoch, the cosine between tasks' gradients.

The teachers and the merge cold start come from a ``flowopd reproduce --budget strong`` folder (``--from``, its
``seed<k>/``); the script waits until they exist. Variants (``--variants``, default all):

* ``opd``: the strong budget's student (merge init, lr 1e-4), the reference;
* ``fresh-lr1e-3``: a fresh LoRA at lr 1e-3 (the init);
* ``rank32``: a fresh rank-32 LoRA at lr 1e-3 (capacity; the merged rank is the teachers' sum);
* ``all-steps``: ``timestep_fraction`` 1.0 (every rollout step trained);
* ``distance``: prompts per task in proportion to the remaining distance to each teacher;
* ``cfg-free``: a CFG-free student (``guidance`` 1.0), each teacher still at its own guidance;
* ``teachers-cfg3``: every teacher queried at 3.0, the student's (the published behaviour);
* ``fresh-distance``: the fresh LoRA at lr 1e-3 with the distance task sampling (the two together);
* ``fixed``: fixed task sampling, the published strong student (the strong budget samples by distance now);
* ``kl-per-sample``, ``kl-per-timestep``, ``kl-per-task``, ``kl-global``: the ``kl_norm`` of that name (each
  sample's KL divided by the previous epoch's mean KL of its sample, step, task or run; docs/method.md);
* ``rank128``: a fresh rank-128 LoRA at lr 1e-3: full rank on every adapted 128-wide projection, the capacity
  of fully fine-tuning those layers (the MLPs and the adaptive norms stay frozen);
* ``full``: ``student_params`` full: every Linear layer of the transformer (99 % of its parameters: attention,
  MLPs, adaptive norms) trained in full from the merge init, at the strong student's lr 1e-4;
* ``full-lr3e-4``: the same at lr 3e-4 (a full fine-tune's weights move per step as much as the LoRA's B).

``--extra NAME=JSON`` adds a variant of your own, e.g. a student from another merge:
``--extra 'merge-tp={"init": "runs/merge-scale/seed0/text=0.5_prefer=0.5/adapter"}'``.

    python benchmarks/seesaw.py --from runs/strong --seed 0 --work runs/seesaw --out docs/notes/seesaw.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

VARIANTS = {
    "opd": {},
    "fresh-lr1e-3": {"init": None, "lr": 1e-3},
    "rank32": {"init": None, "lr": 1e-3, "lora_rank": 32, "lora_alpha": 64.0},
    "all-steps": {"timestep_fraction": 1.0},
    "distance": {"task_sampling": "distance", "log_rewards": True},
    "cfg-free": {"guidance": 1.0},  # a CFG-free student for the CFG-free teachers (each teacher at its own)
    "teachers-cfg3": {"teacher_guidance": 3.0},  # every teacher queried at the student's 3.0, as published
    "fresh-distance": {"init": None, "lr": 1e-3, "task_sampling": "distance", "log_rewards": True},
    "fixed": {"task_sampling": "fixed"},  # the published strong student (before distance became its default)
    **{f"kl-{norm}": {"kl_norm": norm} for norm in ("per-sample", "per-timestep", "per-task", "global")},
    "rank128": {"init": None, "lr": 1e-3, "lora_rank": 128, "lora_alpha": 256.0},
    "full": {"student_params": "full"},
    "full-lr3e-4": {"student_params": "full", "lr": 3e-4},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", required=True, help="a flowopd reproduce --budget strong folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--extra", nargs="+", default=[], metavar="NAME=JSON",
                   help="more variants: a name and the OPD config fields it overrides, as JSON")
    p.add_argument("--work", default="runs/seesaw")
    p.add_argument("--out", default="docs/notes/seesaw.json")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--wait-s", type=float, default=7200, help="how long to wait for the teachers and the merge")
    args = p.parse_args()
    variants = {name: VARIANTS[name] for name in args.variants}
    for item in args.extra:
        name, _, fields = item.partition("=")
        try:
            variants[name] = json.loads(fields)
        except json.JSONDecodeError as err:
            raise SystemExit(f"--extra {item!r}: the fields after NAME= must be a JSON object ({err})") from None
    import torch

    from flowopd.evaluate import evaluate_adapter
    from flowopd.methods.opd.trainer import train_opd
    from flowopd.models import load_model
    from flowopd.reproduce.config import ReproduceConfig
    from flowopd.reproduce.plan import build_plan
    from flowopd.reproduce.retention import retention

    if args.threads:
        torch.set_num_threads(args.threads)
    seed_dir = Path(args.source) / f"seed{args.seed}"
    plan = {s.name: s for s in build_plan(ReproduceConfig.preset("strong"), args.seed, seed_dir)}
    base_dir = Path(args.source) / "seed0"  # the base is evaluated once, in seed 0's folder
    needed = [base_dir / "base" / "result.json"] + [seed_dir / n / "result.json" for n in (
        *(f"teacher-{t}" for t in ("compose", "text", "prefer", "quality")), "coldstart-merge")]
    deadline = time.time() + args.wait_s
    while not all(f.is_file() for f in needed):
        if time.time() > deadline:
            raise SystemExit(f"the teachers and the merge of {seed_dir} did not appear in time")
        time.sleep(30)
    metrics = {n: json.loads(((base_dir if n == "base" else seed_dir) / n / "result.json").read_text())["metrics"]
               for n in ("base", *(f"teacher-{t}" for t in ("compose", "text", "prefer", "quality")))}
    base_cfg = plan["opd"].config
    model = load_model(None)
    out, report = Path(args.out), {"seed": args.seed, "source": str(seed_dir), "teachers": metrics, "variants": {}}
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_file():  # a second invocation adds its variants to the same report
        report["variants"] = json.loads(out.read_text()).get("variants", {})
    for name, fields in variants.items():
        cfg = dataclasses.replace(base_cfg, conflict_every=2, **fields)
        seen: list[dict] = []
        start = time.perf_counter()
        torch.manual_seed(args.seed)
        result = train_opd(model, cfg, Path(args.work) / f"seed{args.seed}" / name, callback=seen.append)
        evaluated = evaluate_adapter(model, result.adapter_dir, merged=True)["metrics"]
        evaluated["average"] = sum(evaluated.values()) / len(evaluated)
        keep = {t: retention(evaluated[t], metrics[f"teacher-{t}"][t], metrics["base"][t])
                for t in ("compose", "text", "prefer", "quality")}
        conflict = [{k: v for k, v in row.items() if k.startswith("conflict/")} for row in seen]
        report["variants"][name] = {"fields": fields, "metrics": evaluated, "retention": keep, "steps": result.step,
                                    "train_s": round(time.perf_counter() - start, 1),
                                    "conflict": [c for c in conflict if c],
                                    "kl_by_task": [{k: v for k, v in row.items() if k.startswith("kl/teacher/")
                                                    and "step_" not in k} for row in seen],
                                    "task_weight": [{k: v for k, v in r.items() if k.startswith("task_weight/")}
                                                    for r in seen if any(k.startswith("task_weight/") for k in r)]}
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(name, json.dumps(evaluated), json.dumps(keep), flush=True)


if __name__ == "__main__":
    main()
