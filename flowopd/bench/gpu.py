"""``flowopd bench gpu``: one Flow-OPD iteration in our layout and in the released code's, in one run.

An iteration is one epoch of :class:`flowopd.methods.opd.trainer.OPDTrainer`: ``batch`` student SDE rollouts of
``steps`` steps (with CFG), then at every trained step the routed teacher's and the anchor's forwards and the
student's forward/backward, and one optimizer step. Each design (:mod:`.designs`) runs one warm-up
iteration, whose FLOPs are counted, then ``iters`` timed ones. The model is the transformer alone
(:mod:`.model`): text encoders and VAE are not built, so their cost is not in the figures.

``OUT/bench-gpu.json`` keys: ``device``, ``device_name``, ``dtype``, ``copy_dtype``, ``shape``,
``transformer_config``, ``resolution``, ``latent_shape``, ``text_tokens``, ``teachers``, ``batch``,
``micro_batch``, ``steps``, ``trained_steps``, ``lora_rank``, ``iters``, ``seed``, ``tf32``, ``memory_method``,
``base_param_count``, ``base_bytes``, ``designs`` (per design: ``description``, ``transformers``,
``adapters``, ``param_count``, ``lora_param_count``, ``trainable_param_count``, ``model_bytes``,
``model_vs_base``, ``static_memory_bytes``, ``peak_memory_bytes``, ``peak_vs_base``,
``seconds_per_iteration``, ``images_per_s``, ``flops_per_iteration``, ``tflops_per_s``, ``loss``),
``speedup`` (full-copy seconds / ours), ``memory_ratio`` (full-copy model bytes / ours), ``goals``,
``versions``, ``notes``. ``OUT/bench-gpu.md`` is the same as a short table.
"""

from __future__ import annotations

import gc
import json
import logging
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from ..methods.opd.trainer import OPDTrainer
from ..world.prompts import TASKS
from .designs import DESIGNS, FullCopyOPDTrainer, base_bytes, footprint, opd_config, write_random_adapters
from .measure import MemoryProbe, flop_counter, synchronize, timed
from .model import SHAPES, BenchFlowModel, build_transformer
from .report import JSON_FILE, MD_FILE, markdown

log = logging.getLogger(__name__)
DTYPES = {"float32": (torch.float32, "no"), "bfloat16": (torch.bfloat16, "bf16"), "float16": (torch.float16, "fp16")}
DESCRIPTIONS = {
    "adapters": "one frozen base in the training dtype; teachers, anchor and student are LoRA adapters on it",
    "full-copy": "the released code: base + student LoRA, plus one full transformer per teacher and for the "
                 "anchor (LoRA merged)",
}
GOALS = {"model_vs_base_max": 1.3, "speedup_min": 1.5}  # issue 19, for sd35-medium on a GPU


@dataclass
class BenchOptions:
    """What ``flowopd bench gpu`` runs; see its ``--help``. Bad values raise ``ValueError``."""

    device: str = "cpu"
    dtype: str = "float32"
    copy_dtype: str | None = None  # None: as dtype
    shape: str = "tiny"
    teachers: int = 3
    batch: int = 4
    micro_batch: int | None = None  # None: batch
    steps: int = 10
    resolution: int | None = None  # None: the shape's (512 for sd35-medium)
    lora_rank: int | None = None  # None: 32 for sd35-medium, 4 for tiny
    iters: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"--shape {self.shape!r} is unknown: use one of {', '.join(SHAPES)}")
        for flag, value in (("--dtype", self.dtype), ("--copy-dtype", self.copy_dtype or self.dtype)):
            if value not in DTYPES:
                raise ValueError(f"{flag} {value!r} is unknown: use one of {', '.join(DTYPES)}")
        self.copy_dtype = self.copy_dtype or self.dtype
        self.resolution = self.resolution or SHAPES[self.shape].resolution
        self.lora_rank = self.lora_rank or (32 if self.shape == "sd35-medium" else 4)
        self.micro_batch = self.micro_batch or self.batch
        if not 1 <= self.teachers <= len(TASKS):
            raise ValueError(f"--teachers {self.teachers} is out of range: use 1 to {len(TASKS)} (one per task)")
        for flag, value in (("--batch", self.batch), ("--steps", self.steps), ("--iters", self.iters),
                            ("--lora-rank", self.lora_rank), ("--micro-batch", self.micro_batch)):
            if value < 1:
                raise ValueError(f"{flag} {value} must be >= 1")
        if self.steps < 2:
            raise ValueError(f"--steps {self.steps} is too few: use >= 2 (the last rollout step is not trained)")
        if self.batch % self.micro_batch:
            raise ValueError(f"--micro-batch {self.micro_batch} must divide --batch {self.batch}")
        SHAPES[self.shape].transformer_config(self.resolution)  # checks the resolution
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available here (use --device cpu --shape tiny)")
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"--device {self.device!r} is not supported: use cpu or cuda")



def _run_design(design: str, opts: BenchOptions, folders: tuple[dict, str], work: Path, acc: Accelerator,
                probe: MemoryProbe) -> tuple[dict, dict]:
    device = acc.device
    shape = SHAPES[opts.shape]
    transformer = build_transformer(opts.shape, opts.resolution, seed=opts.seed, device=device)
    model = BenchFlowModel(transformer, opts.resolution, shape.text_tokens)
    teachers, anchor = folders
    cfg = opd_config(teachers, anchor, batch=opts.batch, micro_batch=opts.micro_batch, steps=opts.steps,
                     rank=opts.lora_rank, mixed_precision=DTYPES[opts.dtype][1], seed=opts.seed)
    if design == "adapters":
        trainer = OPDTrainer(model, cfg, work / design, accelerator=acc, resume=False)
    else:
        pristine = build_transformer(opts.shape, opts.resolution, seed=opts.seed, device=device)
        trainer = FullCopyOPDTrainer(model, cfg, work / design, pristine=pristine,
                                     copy_dtype=DTYPES[opts.copy_dtype][0], accelerator=acc)
        del pristine
    gc.collect()
    synchronize(device)
    held = footprint(trainer)
    static = probe.current()
    probe.reset_peak()
    counter = flop_counter()
    with counter:
        metrics = trainer.train_epoch(0)  # warm-up; its FLOPs are those of every iteration
    seconds = [timed(lambda k=k: trainer.train_epoch(k), device) for k in range(1, opts.iters + 1)]
    peak = probe.peak()
    s = statistics.median(seconds)
    flops = int(counter.get_total_flops())
    out = {"description": DESCRIPTIONS[design], **held, "static_memory_bytes": static, "peak_memory_bytes": peak,
           "seconds_per_iteration": s, "images_per_s": opts.batch / s, "flops_per_iteration": flops,
           "tflops_per_s": flops / s / 1e12, "loss": metrics.get("loss")}
    base = {"base_param_count": sum(p.numel() for n, p in trainer.model.transformer.named_parameters()
                                    if "lora_" not in n),
            "base_bytes": base_bytes(trainer)}
    log.info("bench %s: %.3f s/iteration, %.2f GiB peak", design, s, peak / 2**30)
    return out, base


def run_bench(opts: BenchOptions, out_dir: str | Path | None = None) -> dict:
    """Run both designs and return the report (also written to ``out_dir`` as JSON and Markdown when given)."""
    device = torch.device(opts.device)
    acc = Accelerator(cpu=device.type == "cpu")
    if device.type == "cuda":  # Flow-GRPO's training scripts allow TF32; the float32 copies use it
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    probe = MemoryProbe(device)
    designs, base = {}, {}
    try:
        with tempfile.TemporaryDirectory(prefix="flowopd-bench-") as tmp:
            work = Path(tmp)
            writer = BenchFlowModel(build_transformer(opts.shape, opts.resolution, seed=opts.seed, device=device),
                                    opts.resolution, SHAPES[opts.shape].text_tokens)
            folders = write_random_adapters(writer, work / "adapters-in", opts.teachers, opts.lora_rank,
                                            seed=opts.seed)
            del writer
            for design in DESIGNS:
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                designs[design], first = _run_design(design, opts, folders, work, acc, probe)
                base = base or first
    finally:
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    report = _report(opts, device, probe, designs, base)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / JSON_FILE).write_text(json.dumps(report, indent=1) + "\n")
        (out / MD_FILE).write_text(markdown(report))
    return report


def _report(opts: BenchOptions, device: torch.device, probe: MemoryProbe, designs: dict, base: dict) -> dict:
    import diffusers
    import peft

    for d in designs.values():
        d["model_vs_base"] = d["model_bytes"] / base["base_bytes"]
        d["peak_vs_base"] = d["peak_memory_bytes"] / base["base_bytes"]
    ours, full = designs["adapters"], designs["full-copy"]
    speedup = full["seconds_per_iteration"] / ours["seconds_per_iteration"]
    applies = device.type == "cuda" and opts.shape == "sd35-medium"
    options = asdict(opts)
    shape = SHAPES[opts.shape]
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        **{k: options[k] for k in ("dtype", "copy_dtype", "shape", "resolution", "teachers", "batch", "micro_batch",
                                   "steps", "lora_rank", "iters", "seed")},
        "transformer_config": {k: list(v) if isinstance(v, tuple) else v
                               for k, v in shape.transformer_config(opts.resolution).items()},
        "latent_shape": [16, opts.resolution // 8, opts.resolution // 8],
        "text_tokens": shape.text_tokens,
        "trained_steps": int(opts.steps * 0.99),
        "tf32": device.type == "cuda",
        "memory_method": probe.method,
        **base,
        "designs": designs,
        "speedup": speedup,
        "memory_ratio": full["model_bytes"] / ours["model_bytes"],
        "goals": {**GOALS, "model_vs_base": ours["model_vs_base"], "speedup": speedup,
                  "met": (ours["model_vs_base"] <= GOALS["model_vs_base_max"] and speedup >= GOALS["speedup_min"])
                  if applies else None},
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__, "peft": peft.__version__},
        "notes": [
            "transformer only: random weights and random prompt embeddings of the real shapes; no text encoders "
            "or VAE are built, so their time and memory are not included",
            "one iteration = batch SDE rollouts with CFG, then per trained step the routed teacher's, the "
            "anchor's and the student's forwards and the student's backward, and one optimizer step",
            "FLOPs: torch.utils.flop_counter.FlopCounterMode over the whole warm-up iteration",
            "model_bytes: parameters and buffers of every transformer held (LoRA in float32; optimizer state "
            "and activations are in the peak only)",
            "goals (model_vs_base <= 1.3 for ours, speedup >= 1.5) apply to sd35-medium on a GPU; met is null "
            "elsewhere",
        ],
    }
