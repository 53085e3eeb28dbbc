"""The gradient noise scale of Flow-GRPO on the tiny world: how many prompts one optimizer step needs.

Usage::

    python benchmarks/gradient_noise.py --out runs/noise.json [--tasks text,prefer] [--prompts 16] [--group 4]
                                        [--batches 5] [--init ADAPTER_FOLDER] [--opd OUT/seed0/opd/train.json]
                                        [--set '{"noise_level": 0.3}']

For each task, ``--batches`` independent on-policy rollouts of ``--prompts`` prompts x ``--group`` samples
(the teachers' GRPO config otherwise: 10 SDE steps, noise level 0.7, the first 8 steps trained) give the
policy gradients g_1 .. g_K of the student LoRA, at the fresh LoRA (the start of every teacher) or at
``--init``. ``beta`` is 0 and the weights do not move, so every ratio is 1 and g is the plain policy
gradient ``-mean(A grad log p)``. :func:`flowopd.gradient_noise.noise_scale` turns them into the signal
|G|^2, the per-prompt noise tr(S) and the gradient noise scale B_noise = tr(S) / |G|^2 (McCandlish et al.
2018): the number of prompts at which a step's noise has the size of its signal; far fewer prompts per step
and the step is mostly noise. A prompt (one group) is the unit because a group's advantages are not
independent (they sum to zero).

``--opd TRAIN_JSON`` measures the distillation gradient instead: the config of a finished ``opd`` stage of
``flowopd reproduce`` (its ``train.json``: teachers, init, MAR), with the batch set by ``--prompts`` and
``--group``, prompts of all four tasks mixed as in training. Its loss is the analytic KL to the routed
teacher at every trained step, so its noise comes from the sampled trajectories alone, not from a reward.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from flowopd.adapters import replace_adapter, trainable_parameters
from flowopd.gradient_noise import noise_scale
from flowopd.methods.grpo.config import GRPOConfig
from flowopd.methods.grpo.trainer import GRPOTrainer, gather_advantages
from flowopd.methods.opd.config import OPDConfig
from flowopd.methods.opd.loss import route_teachers
from flowopd.methods.opd.trainer import OPDTrainer
from flowopd.models import load_model
from flowopd.world.prompts import TASKS


def batch_gradient(trainer: GRPOTrainer | OPDTrainer, batch: int) -> tuple[torch.Tensor, float]:
    """The loss gradient of one fresh on-policy batch (flattened over the student's LoRA) and its mean reward
    (GRPO) or mean KL to the teacher (OPD)."""
    cfg = trainer.cfg
    if isinstance(trainer, OPDTrainer):
        roll = trainer.make_rollout(batch, trainer.epoch_tasks(batch))
        routes = route_teachers(roll.records, trainer.teachers)
        rows, summary = list(range(len(roll))), []

        def micro_loss(chunk: list[int], j: int) -> torch.Tensor:
            loss, values = trainer.step_loss(roll, routes, chunk, j)
            summary.append(float(values["kl/teacher"].mean()))
            return loss
    else:
        roll = trainer.make_rollout(batch, cfg.prompt_tasks)
        scores = trainer.score(roll)
        adv = gather_advantages(trainer.acc, scores.total, cfg.group_size, global_std=cfg.global_std,
                                mask_zero_std=cfg.mask_zero_std)
        rows, summary = adv.keep, [float(scores.total.mean())]

        def micro_loss(chunk: list[int], j: int) -> torch.Tensor:
            return trainer.step_loss(roll, adv.local, chunk, j)[0]
    for p in trainer.params:
        p.grad = None
    steps = trainer.sde_steps(batch)  # every trained step, or the batch's sde_window
    for start in range(0, len(rows), cfg.train_batch_size):
        chunk = rows[start:start + cfg.train_batch_size]
        for j in steps:
            (micro_loss(chunk, j) * len(chunk) / (len(rows) * len(steps))).backward()
    grad = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in trainer.params])
    return grad.detach().clone(), sum(summary) / len(summary)


def measure(task: str, prompts: int, group: int, batches: int, init: str | None, opd: str | None = None,
            overrides: dict | None = None) -> dict:
    shape = {"batch_size": prompts * group, "group_size": group, "train_batch_size": min(8, prompts * group),
             "optimizer_steps_per_epoch": 1, "ema": False, "seed": 12345, **(overrides or {})}
    with tempfile.TemporaryDirectory() as tmp:
        if opd is not None:
            stage = json.loads(Path(opd).read_text())["config"]
            trainer: GRPOTrainer | OPDTrainer = OPDTrainer(
                load_model(), OPDConfig.from_dict({**stage, **shape}), tmp, resume=False)
            task = "all (opd)"
        else:
            cfg = GRPOConfig(rewards={task: 1.0}, prompt_tasks={task: 1.0}, beta=0.0, **shape)
            trainer = GRPOTrainer(load_model(), cfg, tmp, resume=False)
        if init is not None:
            replace_adapter(trainer.model, init, trainer.name)
            trainer.params = trainable_parameters(trainer.model, trainer.name)
        start = time.perf_counter()
        pairs = [batch_gradient(trainer, b) for b in range(batches)]
    grads = torch.stack([g for g, _ in pairs])
    return {"task": task, "prompts": prompts, "group": group, "batches": batches, "init": init, "opd": opd,
            "set": overrides or {},
            ("kl_teacher" if opd else "reward"): [round(r, 6) for _, r in pairs],
            "seconds": time.perf_counter() - start,
            **noise_scale(grads, prompts).as_dict()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="JSON file to write (a list of one row per task)")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks (default: all four)")
    p.add_argument("--prompts", type=int, default=16, help="prompts per batch (default 16, the teachers')")
    p.add_argument("--group", type=int, default=4, help="samples per prompt (default 4)")
    p.add_argument("--batches", type=int, default=5, help="independent batches per task, >= 2 (default 5)")
    p.add_argument("--init", help="adapter folder to measure at (default: the fresh LoRA at the base)")
    p.add_argument("--opd", help="train.json of a finished opd stage: measure its distillation gradient instead")
    p.add_argument("--set", default="{}",
                   help='JSON object of config fields to override, e.g. \'{"noise_level": 0.3}\'')
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args()
    if args.batches < 2:
        p.error(f"--batches {args.batches}: the estimate needs at least 2 independent batches")
    torch.set_num_threads(args.threads)
    rows = []
    for task in ["opd"] if args.opd else args.tasks.split(","):
        rows.append(measure(task, args.prompts, args.group, args.batches, args.init, args.opd, json.loads(args.set)))
        rows[-1] = {k: (None if v == float("inf") else v) for k, v in rows[-1].items()}  # strict JSON: inf -> null
        print(json.dumps(rows[-1]), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
