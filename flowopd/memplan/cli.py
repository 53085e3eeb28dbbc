"""``flowopd plan memory``: each training stage's peak GPU memory on SD3.5, before a run starts.

:func:`register` adds the command without importing torch. Bad input raises ``ValueError`` (exit status 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .families import FAMILIES
from .plan import DEFAULT_GPU_GIB, MARGIN, STAGES

EXAMPLE = ("flowopd plan memory --model sd3.5-medium --resolution 512 --preset paper --json\n"
           "  one stage from your config: flowopd plan memory --model sd3.5-large --stage opd --config opd.json")


def detected_gpu_gib() -> float | None:
    """Total memory of CUDA device 0 in GiB, or None without one (torch is imported only if installed)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / 1024 ** 3


def memory_plan(model: str, resolution: int | None, preset_name: str, stages: list[str], *,
                config: str | None = None, gpu_memory_gib: float | None = None, micro_batch: str = "auto",
                text_encoders: str = "cached") -> dict:
    """The plan as the ``--json`` contract: ``{"model", "resolution", "gpu_memory_gib", "stages": [{"stage",
    "micro_batch", "peak_gib", "terms"}, ...]}`` (each stage also has ``decode_chunk`` and ``fits``)."""
    from ..config.base import config_class, read_config
    from .plan import auto_plan, family, fits, plan_stage
    from .settings import KINDS, preset_config, stage_setting

    fam = family(model)
    resolution = resolution or fam.default_resolution
    step = 8 * fam.patch
    if resolution % step or not step <= resolution <= 2048:
        raise ValueError(f"--resolution {resolution} is invalid: use a multiple of {step} up to 2048 (512 or 1024)")
    gpu = gpu_memory_gib or detected_gpu_gib() or DEFAULT_GPU_GIB
    if config and len(stages) != 1:
        raise ValueError("--config needs one --stage: the file is that stage's config")
    out = {"model": fam.name, "resolution": resolution, "gpu_memory_gib": round(gpu, 2), "margin": MARGIN,
           "text_encoders": text_encoders, "stages": []}
    for stage in stages:
        if config:
            cfg = read_config(config, config_class(KINDS[stage]))
        else:
            cfg = preset_config(stage, preset_name)
        setting = stage_setting(stage, cfg)
        checkpointing = getattr(cfg, "gradient_checkpointing", None) is not False  # None: on for SD3
        kw = {"checkpointing": checkpointing, "cached_embeddings": text_encoders == "cached"}
        plan = (auto_plan(fam, setting, resolution, gpu, **kw) if micro_batch == "auto"
                else plan_stage(fam, setting, resolution, **kw))
        out["stages"].append({**plan.to_dict(), "fits": fits(plan, gpu)})
    return out


def table(plan: dict) -> str:
    """The plan as a Markdown table."""
    lines = [f"{plan['model']} at {plan['resolution']} px, {plan['gpu_memory_gib']} GiB GPU "
             f"({int(plan['margin'] * 100)} % kept free), text encoders {plan['text_encoders']}", "",
             "| stage | micro-batch | decode chunk | peak GiB | fits | largest terms (GiB) |",
             "|---|---|---|---|---|---|"]
    for s in plan["stages"]:
        big = sorted(s["terms"].items(), key=lambda kv: -kv[1])[:4]
        lines.append(f"| {s['stage']} | {s['micro_batch']} | {s['decode_chunk'] or '-'} | {s['peak_gib']:.1f} | "
                     f"{'yes' if s['fits'] else '**no**'} | {', '.join(f'{k} {v:.1f}' for k, v in big)} |")
    return "\n".join(lines)


def cmd_plan_memory(args: argparse.Namespace) -> None:
    if args.config and not Path(args.config).is_file():
        raise ValueError(f"--config {args.config} does not exist: pass a stage config JSON (flowopd config KIND)")
    plan = memory_plan(args.model, args.resolution, args.preset, [args.stage] if args.stage else list(STAGES),
                       config=args.config, gpu_memory_gib=args.gpu_memory, micro_batch=args.micro_batch,
                       text_encoders=args.text_encoders)
    print(json.dumps(plan, indent=1) if args.json else table(plan))


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value <= 4096:
        raise argparse.ArgumentTypeError(f"{text} is not a GPU memory in GiB (0 < GiB <= 4096)")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``plan memory`` to the ``flowopd`` command parser."""
    about = "Plans made before a run starts."
    plan = subparsers.add_parser("plan", help=about, description=about)
    psub = plan.add_subparsers(dest="plan_command", required=True, metavar="COMMAND")
    text = ("The peak GPU memory of each training stage on SD3.5 Medium or Large (frozen weights, adapters, the "
            "trained LoRA's state, the rollout, activations from counted bytes, the VAE decode), with the "
            "largest micro-batch and decode chunk that fit (auto). Estimates; see docs/sd35.md.")
    p = psub.add_parser("memory", help="Peak GPU memory of each stage on SD3.5, and the micro-batch that fits.",
                        description=text, epilog=f"example: {EXAMPLE}",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=cmd_plan_memory)
    p.add_argument("--model", required=True, choices=list(FAMILIES), help="the model family")
    p.add_argument("--resolution", type=int, help="image side in pixels (default: the family's, 512 for Medium, "
                                                  "1024 for Large)")
    p.add_argument("--preset", default="paper", choices=("paper", "default"),
                   help="the configs' preset the stages take (default: paper, the SD3.5 settings)")
    p.add_argument("--stage", choices=STAGES, help="one stage (default: all)")
    p.add_argument("--config", help="that stage's config JSON instead of the preset (needs --stage)")
    p.add_argument("--gpu-memory", type=positive_float, metavar="GIB",
                   help=f"GPU memory in GiB (default: the detected GPU's, else {DEFAULT_GPU_GIB}: a 24 GB card)")
    p.add_argument("--micro-batch", default="auto", choices=("auto", "config"),
                   help="auto: the largest micro-batch and decode chunk that fit; config: the config's own")
    p.add_argument("--text-encoders", default="cached", choices=("cached", "resident"),
                   help="cached: prompt embeddings computed once, the encoders off the GPU during training "
                        "(the default); resident: the encoders kept on it")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
