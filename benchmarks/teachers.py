"""The teacher benchmark (issue 18, item 7): for each task, Flow-GRPO with its best recipe, DiffusionNFT, AWM and
a supervised LoRA side by side, the same seeds and the same compute budget per teacher, each evaluated with the
fixed protocol on all four tasks (its own metric and the seesaw on the other three) at fractions of its budget.

Usage::

    python benchmarks/teachers.py --budget-s 240 --seeds 0 1 2 --jobs 2           # 2-core CPU, one thread a job
    python benchmarks/teachers.py --device cuda --scale 20 --jobs 1 --out docs/teachers-h200.json
    python benchmarks/teachers.py --report                                       # rewrite the JSON from the rows

Budget: a teacher trains until its clock passes ``budget_s * scale`` (checked after every epoch, or every
step for SFT, so a run overshoots by at most one epoch; ``wall_s`` is the clock at the evaluated point).
The clock is the job's *CPU* time on a CPU (``--clock cpu``; each job runs one thread pinned to its own
core, so that other work on the machine does not shrink a teacher's budget) and wall time on a GPU.
Evaluation time is not counted. Each run writes a row at every point of ``--points`` (fractions of the
budget, default 0.5 and 1) so that the report can plot gain against time.

Rows go to ``WORK/rows.jsonl`` as they finish (a re-run skips the jobs done), and ``--out`` is rewritten
after every row as ``{"machine", "budget_s", "clock", "recipes", "base": {task: metric},
"rows": [{"algorithm", "task", "seed", "wall_s", "fraction", "metrics": {task: metric}}]}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from flowopd.events import TrainingCallback

ALGORITHMS = ("grpo", "nft", "awm", "sft")
TASKS = ("compose", "text", "prefer", "quality")
# The recipes compared (live weights everywhere: over a few dozen steps an EMA keeps initial weights,
# docs/notes/grpo-tuning.md). GRPO: run "W" of docs/notes/grpo-tuning.md, its best measured recipe (an SDE window of 2
# steps with shared group noise, 40 prompts x 4 per epoch). NFT and AWM: their configs' tiny-world defaults.
# SFT: its defaults on SFT_IMAGES renders of the task's train prompts (flowopd world dataset).
RECIPES: dict[str, dict[str, Any]] = {
    "grpo": dict(batch_size=160, group_size=4, train_batch_size=8, optimizer_steps_per_epoch=2, lr=1e-3,
                 sde_window=2, shared_group_noise=True, ema=False),
    "nft": dict(ema=False),
    "awm": dict(ema=False),
    "sft": dict(),
}
SFT_IMAGES = 512
ENDLESS = 100_000  # epochs (steps for SFT): the budget stops the run


def config_for(algorithm: str, task: str, seed: int, data_dir: Path | None) -> Any:
    """The stage config of one teacher (its run length is the budget's business)."""
    from flowopd.config.base import config_class, config_kinds

    config_kinds()  # imports every config module, so that each kind is registered
    cls = config_class(algorithm)
    common = {"seed": seed, "sample_every": 0, "checkpoint_every": ENDLESS, **RECIPES[algorithm]}
    if algorithm == "sft":
        return cls.from_dict({**common, "data": str(data_dir), "steps": ENDLESS})
    return cls.from_dict({**common, "rewards": {task: 1.0}, "prompt_tasks": {task: 1.0}, "epochs": ENDLESS})


class BudgetCallback(TrainingCallback):
    """Stops the run at the budget and snapshots the live adapter at the budget's fractions ``points``."""

    def __init__(self, model, adapter: str, budget_s: float, points: list[float], out: Path, clock: str):
        self.model, self.adapter, self.budget_s, self.out, self.clock = model, adapter, budget_s, out, clock
        self.pending = sorted(points)
        self.start = self.now()
        self.snapshots: list[tuple[float, float, Path]] = []  # (fraction, seconds, folder)

    def now(self) -> float:
        if self.clock == "cpu":
            return time.process_time()
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_metrics(self, step: int, metrics: dict) -> None:
        from flowopd.adapters import save_adapter

        spent = self.now() - self.start
        while self.pending and spent >= self.pending[0] * self.budget_s:
            fraction = self.pending.pop(0)
            folder = self.out / f"snapshot-{fraction:g}"
            save_adapter(self.model, self.adapter, folder)
            self.snapshots.append((fraction, spent, folder))

    def should_stop(self) -> bool:
        return not self.pending


def run_job(algorithm: str, task: str, seed: int, args: argparse.Namespace, work: Path) -> list[dict]:
    """Train one teacher to its budget and evaluate every snapshot; returns its rows."""
    from flowopd.evaluate import EvalConfig, evaluate_adapter
    from flowopd.models import load_model

    data_dir = ensure_sft_data(task, work) if algorithm == "sft" else None
    cfg = config_for(algorithm, task, seed, data_dir)
    out = work / f"{algorithm}-{task}-{seed}"
    model = load_model(args.model, device=args.device) if args.model else load_model(device=args.device)
    budget = BudgetCallback(model, cfg.adapter_name, args.budget_s * args.scale, args.points, out, args.clock)
    train(algorithm, model, cfg, out, budget)
    rows = []
    for fraction, spent, folder in budget.snapshots:
        report = evaluate_adapter(model, folder, EvalConfig(), merged=True)
        rows.append({"algorithm": algorithm, "task": task, "seed": seed, "wall_s": round(spent, 1),
                     "fraction": fraction, "metrics": {t: float(v) for t, v in report["metrics"].items()}})
    return rows


def train(algorithm: str, model, cfg, out: Path, callback) -> None:
    if algorithm == "grpo":
        from flowopd.methods.grpo.trainer import train_grpo as fn
    elif algorithm == "nft":
        from flowopd.methods.nft.trainer import train_nft as fn
    elif algorithm == "awm":
        from flowopd.methods.awm.trainer import train_awm as fn
    else:
        from flowopd.methods.sft.trainer import train_sft as fn
    fn(model, cfg, out, callback=callback, resume=False)


def ensure_sft_data(task: str, work: Path) -> Path:
    """The task's image set (renders of its train prompts), written once and shared by every seed."""
    from flowopd.world.dataset import ensure_image_set

    folder = work / "data" / task
    ensure_image_set(folder, task, SFT_IMAGES)
    return folder


def base_metrics(args: argparse.Namespace, work: Path) -> dict[str, float]:
    path = work / "base.json"
    if not path.is_file():
        from flowopd.evaluate import EvalConfig, evaluate_adapter
        from flowopd.models import load_model

        model = load_model(args.model, device=args.device) if args.model else load_model(device=args.device)
        report = evaluate_adapter(model, None, EvalConfig())
        path.write_text(json.dumps({t: float(v) for t, v in report["metrics"].items()}))
    return json.loads(path.read_text())


def jobs(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    return [(a, t, s) for s in args.seeds for t in args.tasks for a in args.algorithms]


def done_rows(work: Path) -> list[dict]:
    path = work / "rows.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def write_report(args: argparse.Namespace, work: Path) -> dict:
    rows = sorted(done_rows(work), key=lambda r: (r["task"], r["algorithm"], r["seed"], r["fraction"]))
    report = {"machine": args.machine, "budget_s": args.budget_s * args.scale, "clock": args.clock,
              "device": args.device, "points": args.points, "recipes": RECIPES, "sft_images": SFT_IMAGES,
              "base": base_metrics(args, work), "rows": rows}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


def claim(work: Path, job: tuple[str, str, int]) -> bool:
    """Take ``job`` for this worker (an exclusive file create: the first worker free takes the next job)."""
    folder = work / "claims"
    folder.mkdir(exist_ok=True)
    try:
        os.close(os.open(folder / "{}-{}-{}".format(*job), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def summary_table(report: dict) -> str:
    """Markdown: per task and algorithm, the own-metric gain and the others' change at the full budget (mean
    ± std over seeds, the seeds counted), and the CPU seconds spent."""
    import statistics

    def cell(values: list[float]) -> str:
        mean = statistics.fmean(values)
        return f"{mean:+.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")

    base, lines = report["base"], ["| task | algorithm | seeds | seconds | own metric gain | " +
                                   " | ".join(f"{t} change" for t in TASKS) + " |", "|---" * (5 + len(TASKS)) + "|"]
    final = [r for r in report["rows"] if r["fraction"] == max(report["points"])]
    for task in TASKS:
        for algorithm in ALGORITHMS:
            rows = [r for r in final if r["task"] == task and r["algorithm"] == algorithm]
            if not rows:
                continue
            gains = {t: [r["metrics"][t] - base[t] for r in rows] for t in TASKS}
            lines.append(f"| {task} | {algorithm} | {len(rows)} | {statistics.fmean(r['wall_s'] for r in rows):.0f} | "
                         f"**{cell(gains[task])}** | " + " | ".join(cell(gains[t]) for t in TASKS) + " |")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Own-metric gain against the seconds spent, one panel per task, one line per algorithm (seed means)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(4 * len(TASKS), 3.4), sharey=True)
    for ax, task in zip(axes, TASKS):
        for algorithm in ALGORITHMS:
            rows = [r for r in report["rows"] if r["task"] == task and r["algorithm"] == algorithm]
            points = sorted({r["fraction"] for r in rows})
            if not points:
                continue
            xs = [0.0] + [sum(r["wall_s"] for r in rows if r["fraction"] == f) /
                          len([r for r in rows if r["fraction"] == f]) for f in points]
            ys = [0.0] + [sum(r["metrics"][task] for r in rows if r["fraction"] == f) /
                          len([r for r in rows if r["fraction"] == f]) - report["base"][task] for f in points]
            ax.plot(xs, ys, marker="o", label=algorithm)
        ax.axhline(0.10, color="grey", linestyle=":", linewidth=1)
        ax.set_title(task)
        ax.set_xlabel(f"{report['clock']} seconds of training")
    axes[0].set_ylabel("gain on the task's own metric")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def worker(args: argparse.Namespace, work: Path) -> None:
    import torch

    torch.set_num_threads(1 if args.device == "cpu" else torch.get_num_threads())
    done = {(r["algorithm"], r["task"], r["seed"]) for r in done_rows(work)}
    for algorithm, task, seed in [j for j in jobs(args) if j not in done]:
        if not claim(work, (algorithm, task, seed)):
            continue  # another worker took it
        start = time.time()
        rows = run_job(algorithm, task, seed, args, work)
        with open(work / "rows.jsonl", "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        write_report(args, work)
        own = rows[-1]["metrics"][task] if rows else float("nan")
        print(f"[worker {args.worker}] {algorithm} {task} seed {seed}: {own:.3f} own metric, "
              f"{time.time() - start:.0f} s with its evaluation", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budget-s", type=float, default=240.0, help="seconds of training per teacher (before --scale)")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies the budget (e.g. 20 on a GPU)")
    p.add_argument("--points", nargs="+", type=float, default=[0.5, 1.0], help="fractions of the budget evaluated")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--clock", choices=("cpu", "wall"), default=None, help="default: cpu on a CPU, wall on a GPU")
    p.add_argument("--model", default=None, help="base model folder (default: the built-in tiny model)")
    p.add_argument("--jobs", type=int, default=1, help="parallel jobs (on a CPU: one core and one thread each)")
    p.add_argument("--work", default="runs/teachers", help="folder of the runs and rows.jsonl")
    p.add_argument("--out", default="docs/notes/teachers-tiny.json")
    p.add_argument("--machine", default=f"{platform.machine()} {os.cpu_count()}-core CPU machine",
                   help="how the report names the machine")
    p.add_argument("--report", action="store_true", help="only rewrite --out from the rows done")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.clock = args.clock or ("cpu" if args.device == "cpu" else "wall")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.worker is not None:
        return worker(args, work)
    base_metrics(args, work)
    if not args.report:
        shutil.rmtree(work / "claims", ignore_errors=True)  # jobs claimed by a stopped run start over
        argv = sys.argv[1:] if argv is None else argv
        procs = []
        for k in range(args.jobs):
            pin = ["taskset", "-c", str(k % (os.cpu_count() or 1))] if args.device == "cpu" else []
            procs.append(subprocess.Popen([*pin, sys.executable, __file__, *argv, "--worker", str(k)]))
        codes = [proc.wait() for proc in procs]
        if any(codes):
            print(f"workers exited with {codes}; rows done so far are kept", file=sys.stderr)
    report = write_report(args, work)
    if report["rows"]:
        plot(report, Path(args.out).with_suffix(".png"))
        print(summary_table(report))
    print(f"wrote {args.out} and its plot ({len(report['rows'])} rows)")


if __name__ == "__main__":
    main()
