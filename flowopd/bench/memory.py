"""``flowopd bench memory``: the memory plan against a measurement, stage by stage.

For each stage of the plan (:mod:`flowopd.memplan`), build the family's transformer with random weights (all of
its blocks, or the first ``layers`` for a slice) in bf16 on the device, add the stage's adapters (the trained LoRA
in fp32 with AdamW, the frozen ones), switch gradient checkpointing on, and run one training micro-batch: the
velocity (guided for GRPO and OPD), its backward and the optimizer step. On CUDA the measurement is
``torch.cuda.max_memory_allocated``; on a CPU, the peak of live tensor bytes (:class:`flowopd.memplan.count.LiveBytes`,
the weights' storages included). The plan's matching terms (the transformer, its position table, the adapters,
the trained LoRA's state and the activations: no text encoders, VAE, rollout or decode, which this builds not)
give the ratio.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from ..memplan.families import FAMILIES, Family, lora_projections
from ..memplan.plan import GIB, STAGES, plan_stage
from ..memplan.settings import preset_config, stage_setting
from ..models.base import PromptEmbeds
from .model import SD35_MEDIUM_TRANSFORMER, BenchFlowModel

MEASURED_TERMS = ("transformer", "position_table", "frozen_adapters", "trained_lora", "activations")
LARGE_TRANSFORMER = {**SD35_MEDIUM_TRANSFORMER, "num_layers": 38, "num_attention_heads": 38,
                     "caption_projection_dim": 2432, "pos_embed_max_size": 192, "dual_attention_layers": ()}


def transformer_config(family: Family, layers: int | None) -> dict:
    cfg = dict(SD35_MEDIUM_TRANSFORMER if family.name == "sd3.5-medium" else LARGE_TRANSFORMER)
    if layers:
        cfg.update(num_layers=layers, dual_attention_layers=tuple(range(min(layers, family.dual_layers))))
    return cfg


def measure_stage(family: Family, stage: str, resolution: int, micro_batch: int, *, device: str = "cuda",
                  layers: int | None = None) -> dict:
    """One training micro-batch of ``stage`` measured against the plan's matching terms (GiB)."""
    from diffusers import SD3Transformer2DModel

    from ..adapters import add_lora, trainable_parameters, use_adapter
    from ..memplan.count import LiveBytes, storage_keys
    from ..training.dist import cast_base

    setting = stage_setting(stage, preset_config(stage, "paper"))
    setting = dataclasses.replace(setting, micro_batch=micro_batch, half=True)
    cfg = transformer_config(family, layers)
    with torch.device("meta"):
        params = sum(p.numel() for p in SD3Transformer2DModel(**cfg).parameters())
    layers, dual = cfg["num_layers"], len(cfg["dual_attention_layers"])
    sliced = dataclasses.replace(family, layers=layers, dual_layers=dual, transformer_params=params,
                                 lora_projections=lora_projections(layers, dual))
    planned = plan_stage(sliced, setting, resolution).terms
    on_cuda = device.startswith("cuda")
    start = time.perf_counter()
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # the base is built in bf16 (no fp32 copy at any time), as trainers hold it
    try:
        with torch.device(device):
            transformer = SD3Transformer2DModel(**cfg)
    finally:
        torch.set_default_dtype(default)
    model = BenchFlowModel(transformer, resolution, 205)
    for i, rank in enumerate(setting.frozen_adapters):
        add_lora(model, f"frozen{i}", rank, 2.0 * rank)
    add_lora(model, "student", setting.lora_rank, 2.0 * setting.lora_rank)
    trained = trainable_parameters(model, "student")
    cast_base(model, "bf16")  # as the trainers: fp32 LoRAs, a bf16 base and position table
    transformer.enable_gradient_checkpointing()
    transformer.train()
    opt = torch.optim.AdamW(trained, lr=1e-4)
    m, side = micro_batch, resolution // 8
    x = torch.randn(m, 16, side, side, device=device)
    cond = PromptEmbeds(torch.randn(m, 205, 4096, device=device), torch.randn(m, 2048, device=device))
    uncond = PromptEmbeds(torch.randn(m, 205, 4096, device=device), torch.randn(m, 2048, device=device))
    resident = sum(t.numel() * t.element_size() for t in (*transformer.parameters(), *transformer.buffers()))
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    tracker = LiveBytes(storage_keys(transformer)) if not on_cuda else _nothing()
    with tracker:
        with use_adapter(model, "student"):
            v = model.velocity(x, 0.5, cond, uncond if setting.sequences == 2 else None, 4.5)
            v.square().mean().backward()
        opt.step()
    if on_cuda:
        torch.cuda.synchronize()
        measured = torch.cuda.max_memory_allocated() / GIB
    else:  # the weights, and the peak of what the step allocated (activations, gradients, AdamW's moments)
        measured = (resident + tracker.peak) / GIB
    plan_gib = sum(planned[t] for t in MEASURED_TERMS)
    return {"stage": stage, "micro_batch": micro_batch, "layers": cfg["num_layers"], "resolution": resolution,
            "device": torch.cuda.get_device_name() if on_cuda else "cpu", "measured_gib": round(measured, 3),
            "planned_gib": round(plan_gib, 3), "ratio": round(plan_gib / measured, 3) if measured else None,
            "planned_terms": {t: round(planned[t], 3) for t in MEASURED_TERMS},
            "seconds": round(time.perf_counter() - start, 1)}


class _nothing:
    peak = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def run(model: str, resolution: int, micro_batch: int, out: str | Path, *, stages: tuple[str, ...] = STAGES,
        device: str = "cuda", layers: int | None = None) -> list[dict]:
    """Measure ``stages`` one after another (each on a fresh model) and write ``OUT/bench-memory.json``."""
    family = FAMILIES[model]
    rows = []
    for stage in stages:
        rows.append(measure_stage(family, stage, resolution, micro_batch, device=device, layers=layers))
        print(json.dumps(rows[-1]), flush=True)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench-memory.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows
