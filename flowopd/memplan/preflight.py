"""The check before a run starts: an SD3.5 run whose memory plan does not fit its GPU is refused with the plan."""

from __future__ import annotations

from typing import Any

from .families import FAMILIES, Family
from .plan import GIB, StagePlan, fits, plan_stage, refusal
from .settings import stage_setting


def family_of(model: Any) -> Family | None:
    """The plan's family of a loaded model (by its transformer's blocks and width), or None (the tiny model, a
    random test pipeline, a family the plan does not know)."""
    cfg = getattr(getattr(model, "transformer", None), "config", None)
    if cfg is None or not hasattr(cfg, "num_layers"):
        return None
    return family_of_config(cfg)


def family_of_config(cfg: Any) -> Family | None:
    """The plan's family of an SD3 transformer config (a diffusers config or its ``config.json`` as a dict): the
    one with its blocks and width, or None."""
    get = cfg.get if isinstance(cfg, dict) else lambda key: getattr(cfg, key)
    shape = (get("num_layers"), get("num_attention_heads") * get("attention_head_dim"))
    return next((f for f in FAMILIES.values() if (f.layers, f.width) == shape), None)


def stage_of(kind: str, cfg: Any) -> str | None:
    """The plan's stage of a run kind (a cold start only in mode ``sft``: the merges train nothing)."""
    if kind == "coldstart":
        return "coldstart-sft" if cfg.mode == "sft" else None
    return kind if kind in ("grpo", "nft", "awm", "sft", "opd") else None


def preflight(model: Any, kind: str, cfg: Any, *, gpu_memory_gib: float | None = None) -> StagePlan | None:
    """Refuse a run whose plan exceeds the GPU (``gpu_memory_gib``, default: the model's CUDA device's memory).

    Returns the plan, or None when there is nothing to check (not an SD3.5 family, not on a GPU, a stage
    without training).

    Raises:
        ValueError: the plan does not fit; the message has the plan's terms and the fix.
    """
    fam, stage = family_of(model), stage_of(kind, cfg)
    if fam is None or stage is None:
        return None
    if gpu_memory_gib is None:
        device = model.device
        if device.type != "cuda":
            return None
        import torch

        gpu_memory_gib = torch.cuda.get_device_properties(device).total_memory / GIB
    cache = getattr(cfg, "cache_prompt_embeddings", None)
    plan = plan_stage(fam, stage_setting(stage, cfg), model.image_size,
                      checkpointing=getattr(cfg, "gradient_checkpointing", None) is not False,
                      cached_embeddings=cache is not False)
    if not fits(plan, gpu_memory_gib):
        raise ValueError(refusal(plan, gpu_memory_gib))
    return plan
