"""Sampling and training speed of a model on this machine; writes a JSON report.

    python benchmarks/speed.py --json docs/speed-tiny.json [--model PATH] [--threads 2]

Reports medians over repeats: 10-step SDE rollouts with CFG (the GRPO/OPD rollout setting), ODE
generation at the eval step count, and pretraining steps (forward + backward + AdamW).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time

import torch


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: built-in tiny model)")
    parser.add_argument("--json", help="write the report here")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch", type=int, default=32, help="images per sampling batch")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from flowopd.evaluate import EvalConfig
    from flowopd.models import load_model
    from flowopd.pretrain import PretrainConfig, scene_batch, scene_loss
    from flowopd.sampling import sample

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(args.model, device=device)
    prompts = ['a sign that says "HAT"', "a photo of three circles"] * (args.batch // 2)
    seeds = list(range(len(prompts)))
    with torch.no_grad():
        cond = model.encode_prompts(prompts)
    ev = EvalConfig()
    sde = median_time(lambda: sample(model, cond, seeds=seeds, num_steps=10, guidance=ev.guidance,
                                     noise_level=0.7, generator=torch.Generator().manual_seed(0)), args.repeats)
    ode = median_time(lambda: sample(model, cond, seeds=seeds, num_steps=ev.num_steps, guidance=ev.guidance),
                      args.repeats)
    report = {"machine": f"{platform.machine()} {device}, {args.threads} threads", "batch": len(prompts),
              "sde10_cfg_images_per_s": len(prompts) / sde,
              f"ode{ev.num_steps}_cfg_images_per_s": len(prompts) / ode}
    if hasattr(model, "text_encoder"):  # training speed of the tiny model's pretraining step
        cfg = PretrainConfig()
        params = [p for m in model.modules().values() for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=1e-5)
        rng, gen = random.Random(0), torch.Generator().manual_seed(0)

        def train_step() -> None:
            images, caps = scene_batch(rng, cfg)
            loss = scene_loss(model, images, caps, gen)
            opt.zero_grad()
            loss.backward()
            opt.step()

        report["pretrain_images_per_s"] = cfg.batch_size / median_time(train_step, args.repeats)
    text = json.dumps(report, indent=2)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
