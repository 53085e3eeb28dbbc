"""Pre-flight: how long a chain of runs will take here and, on a GPU, how much memory its training needs.

**Time.** A GRPO or OPD run costs ``epochs x batch_size`` images at the ``images_per_s`` this machine measured
(the median of the recent runs of that stage on the same base model in the store; the metric covers
sampling, scoring and training), plus :data:`RUN_OVERHEAD_S` to start the worker and load the model. With no
such run, the fallback figures below (measured, built-in tiny model) are scaled by 10 / ``num_steps``; an SD3
base without measurements gets no time estimate. A merge cold start costs the overhead only; an SFT one its
teacher samples at the ODE rate and its steps at the pretraining rate (docs/speed-tiny.json).

**Memory.** On an SD3.5 base, every training stage's peak from the memory plan (:mod:`flowopd.memplan`: counted
bytes per term, the numbers of ``flowopd plan memory`` and docs/sd35.md, and the check the worker runs before the
stage starts, refusing one that does not fit its GPU), whatever machine the app runs on. On another model (the
tiny one) on a GPU, a formula: the frozen weights (2 bytes per parameter in fp16/bf16, else 4), the LoRA's
training state (20 bytes per LoRA parameter) and one micro-batch's activations after Korthikanti et al.
(2022), ``s b h (34 + 5 a s / h)`` bytes per layer in half precision (doubled in fp32), plus 20 %.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from .base_models import BaseModel

RUN_OVERHEAD_S = 10.0  # worker start-up and model load (docs/storage.md: 5.7-7.3 s to start a worker)
# Built-in tiny model, 2-core CPU, the quick pipeline run by real workers with nothing else training:
# a quick teacher's 512 images in 99-123 s and the distillation's 512 in 168 s, start-up included. (With another
# process training on the same cores, speeds halve: GRPO 2.4, OPD 2.1 images/s.)
# The forward-process teachers and the sft teacher (training images, steps x batch): the quick whole pipeline of
# the strongest sources (benchmarks/quick_pipeline.py), the median images_per_s of its runs.
FALLBACK_IMAGES_PER_S = {"grpo": 5.0, "opd": 3.2, "nft": 9.0, "awm": 7.2, "sft": 120.0}
ODE_IMAGES_PER_S, SFT_IMAGES_PER_S = 7.1, 120.0  # docs/speed-tiny.json: ODE 20 steps with CFG; pretraining
RECENT_RUNS = 5


@dataclass
class Estimate:
    """Seconds per stage (None: unknown), their sum, how each was estimated, and the GPU memory formula."""

    stages: list[dict] = field(default_factory=list)  # {stage, seconds, how}
    memory_gib: float | None = None
    memory_how: str = ""
    memory_plans: list[dict] = field(default_factory=list)  # SD3.5: {stage, micro_batch, resolution, peak_gib}

    @property
    def total_s(self) -> float | None:
        secs = [s["seconds"] for s in self.stages]
        return None if any(s is None for s in secs) else float(sum(secs))

    def text(self, gpu: bool) -> str:
        lines = ["| stage | time | how |", "|---|---|---|"]
        for s in self.stages:
            lines.append(f"| {s['stage']} | {_fmt(s['seconds'])} | {s['how']} |")
        lines.append(f"| **total** | **{_fmt(self.total_s)}** | runs one after another |")
        if self.memory_plans:
            lines += ["\nPeak GPU memory per stage (the memory plan of `flowopd plan memory`, counted bytes; a "
                      "stage whose plan exceeds its GPU is refused before it starts):", "",
                      "| stage | micro-batch | resolution | peak |", "|---|---|---|---|"]
            lines += [f"| {p['stage']} | {p['micro_batch']} | {p['resolution']} px | {p['peak_gib']:.1f} GiB |"
                      for p in self.memory_plans]
        elif gpu and self.memory_gib is not None:
            lines.append(f"\nPeak GPU memory of the largest stage: about **{self.memory_gib:.1f} GiB** "
                         f"({self.memory_how}).")
        elif not gpu:
            lines.append("\nNo GPU here: runs train on the CPU, whose memory the tiny model barely uses.")
        return "\n".join(lines)


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def measured_rate(store, stage: str, model_ref: str | None) -> tuple[float, int] | None:
    """(median images_per_s, runs) of the recent runs of ``stage`` on ``model_ref`` in the store, or None."""
    rates, runs = [], 0
    for run in store.list_runs():
        if run.stage != stage or run.config.get("model") != model_ref:
            continue
        values = [r["value"] for r in store.metrics(run.id, "images_per_s") if r["value"]]
        if values:
            rates.append(statistics.median(values))
            runs += 1
        if runs >= RECENT_RUNS:
            break
    return (statistics.median(rates), runs) if rates else None


def stage_seconds(store, stage: str, cfg: dict, base: BaseModel) -> tuple[float | None, str]:
    if stage == "coldstart":
        if cfg.get("mode") != "sft":
            return RUN_OVERHEAD_S, f"{cfg.get('mode')}: start-up only"
        images = cfg["sft_samples_per_task"] * len(cfg["teachers"])
        secs = images / ODE_IMAGES_PER_S + cfg["sft_steps"] * cfg["sft_batch_size"] / SFT_IMAGES_PER_S
        return RUN_OVERHEAD_S + secs, f"{images} teacher samples at {ODE_IMAGES_PER_S} images/s + SFT steps"
    # an sft teacher samples nothing: its images are the training images it passes (steps x batch)
    images = cfg["steps"] * cfg["batch_size"] if stage == "sft" else cfg["epochs"] * cfg["batch_size"]
    found = measured_rate(store, stage, cfg.get("model"))
    if found:
        rate, runs = found
        how = f"{images} images at {rate:.2f} images/s (median of {runs} recent {stage} run(s) here)"
    elif base.backend == "tiny" and stage in FALLBACK_IMAGES_PER_S:
        rate = FALLBACK_IMAGES_PER_S[stage] * 10 / cfg.get("num_steps", 10)
        how = f"{images} images at {rate:.2f} images/s (fallback: measured on the built-in model, 2-core CPU)"
    else:
        return None, f"{images} images; no {stage} run on this base here yet to measure its speed"
    return RUN_OVERHEAD_S + images / rate, how


MAX_RUN_S = 3 * 24 * 3600  # a run the app refuses to queue: three days of the machine (the estimate says why)


def check_run_size(stage: str, cfg: dict, base: BaseModel) -> None:
    """Refuse a run whose estimated time on the built-in model passes :data:`MAX_RUN_S`, with the estimate and
    the fields to lower (a batch of a billion images is a typo, not a plan); an SD3 base has no rate here to
    estimate with, so it is not refused."""
    if base.backend != "tiny":
        return
    if stage == "sft":
        images, fields, rate = cfg["steps"] * cfg["batch_size"], "steps or batch_size", FALLBACK_IMAGES_PER_S["sft"]
    elif "epochs" in cfg and "batch_size" in cfg:
        rate = FALLBACK_IMAGES_PER_S.get(stage, FALLBACK_IMAGES_PER_S["grpo"]) * 10 / max(cfg.get("num_steps", 10), 1)
        images, fields = cfg["epochs"] * cfg["batch_size"], "epochs or batch_size"
    else:
        return
    seconds = RUN_OVERHEAD_S + images / rate
    if seconds > MAX_RUN_S:
        raise ValueError(f"Settings: this run trains on {images:,} images, about {_fmt(seconds)} on this machine "
                         f"(at {rate:.1f} images/s, measured on the built-in model), more than the "
                         f"{_fmt(MAX_RUN_S)} the app queues: lower {fields}")


def base_family(base: BaseModel):
    """The memory plan's family of an SD3 base: from its folder's ``transformer/config.json``, else SD3.5 Medium
    (a Hub id, or a family the plan does not know)."""
    import json
    from pathlib import Path

    from flowopd.memplan.families import MEDIUM
    from flowopd.memplan.preflight import family_of_config

    config = Path(base.ref or "").expanduser() / "transformer" / "config.json"
    try:
        return family_of_config(json.loads(config.read_text())) or MEDIUM
    except (OSError, ValueError, KeyError, TypeError):
        return MEDIUM


def memory_plans(stages: list[tuple[str, dict]], base: BaseModel, labels: list[str] | None = None) -> list[dict]:
    """Each training stage's memory plan on the SD3 ``base`` at its config's resolution (None: the family's)."""
    from types import SimpleNamespace

    from flowopd.memplan.plan import plan_stage
    from flowopd.memplan.preflight import stage_of
    from flowopd.memplan.settings import stage_setting

    fam, out = base_family(base), []
    for k, (kind, cfg) in enumerate(stages):
        fields = SimpleNamespace(**cfg)
        stage = stage_of(kind, fields)
        if stage is None:  # a merge cold start trains nothing
            continue
        resolution = cfg.get("resolution") or fam.default_resolution
        plan = plan_stage(fam, stage_setting(stage, fields), resolution,
                          checkpointing=cfg.get("gradient_checkpointing") is not False,
                          cached_embeddings=cfg.get("cache_prompt_embeddings") is not False)
        out.append({"stage": labels[k] if labels else kind, "micro_batch": plan.micro_batch, "resolution": resolution,
                    "peak_gib": round(plan.peak_gib, 2)})
    return out


def model_arch(model) -> dict:
    """Parameters, layers, width, heads and joint tokens of a loaded model's transformer (for the formula)."""
    cfg = dict(getattr(model.transformer, "config", {}))
    heads, head_dim = cfg.get("num_attention_heads", 1), cfg.get("attention_head_dim", 64)
    patches = (cfg.get("sample_size", 32) // cfg.get("patch_size", 2)) ** 2
    params = sum(p.numel() for m in model.modules().values() for p in m.parameters())
    return {"params": params, "layers": cfg.get("num_layers", 1), "width": heads * head_dim, "heads": heads,
            "tokens": patches + 77}


def peak_memory_gib(cfg: dict, arch: dict) -> float:
    """The formula of the module docstring for one GRPO/OPD config on a model of ``arch``."""
    half = cfg.get("mixed_precision", "no") in ("fp16", "bf16")
    weights = arch["params"] * (2 if half else 4)
    per_layer_lora = 4 * cfg["lora_rank"] * arch["width"] * 2  # 4 attention projections of each stream, A and B
    lora = 2 * per_layer_lora * arch["layers"] * 20
    s, b, h, a = arch["tokens"], cfg["train_batch_size"], arch["width"], arch["heads"]
    activations = s * b * h * (34 + 5 * a * s / h) * arch["layers"] * (1 if half else 2)
    return 1.2 * (weights + lora + activations) / 2**30


def estimate(store, stages: list[tuple[str, dict]], base: BaseModel, arch: dict | None = None,
             labels: list[str] | None = None) -> Estimate:
    """The pre-flight of ``stages`` (stage, config) run in order on ``base``: times, and memory (the memory
    plan on an SD3 base; else the formula with ``arch`` from :func:`model_arch` of the app's model). ``labels``
    name the stages in the table (default: their kinds)."""
    est = Estimate()
    for k, (stage, cfg) in enumerate(stages):
        secs, how = stage_seconds(store, stage, cfg, base)
        est.stages.append({"stage": labels[k] if labels else stage, "seconds": secs, "how": how})
    if base.backend == "sd3":
        est.memory_plans = memory_plans(stages, base, labels)
        return est
    trained = [cfg for stage, cfg in stages if stage in ("grpo", "opd")]
    if arch and trained:
        est.memory_gib = max(peak_memory_gib(cfg, arch) for cfg in trained)
        est.memory_how = ("formula: weights + LoRA training state + one micro-batch's activations "
                          "(Korthikanti et al. 2022) + 20 %; not measured")
    return est
