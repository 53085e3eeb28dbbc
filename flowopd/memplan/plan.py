"""The memory plan: the peak accelerator memory of each training stage on an SD3.5 family, before it runs.

Peak = what stays resident (the frozen transformer, its fp32 position table, the text encoders unless the
prompt embeddings are cached, the VAE, frozen adapters, the trained LoRA's weights, gradient and AdamW state)
+ the rollout's latents and embeddings + the larger of the training micro-batch's activations and the
rollout's VAE decode (they come at different times). Activations follow :mod:`.families`' counted
coefficients. The formula and its terms are documented in ``docs/sd35.md`` (which this module regenerates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .families import FAMILIES, TEXT_TOKENS, Family

GIB = 1024 ** 3
MARGIN = 0.10  # kept free for the allocator's caching and fragmentation
STAGES = ("grpo", "nft", "awm", "sft", "coldstart-sft", "opd")
DEFAULT_GPU_GIB = 22.0  # what a 24 GB card (24e9 bytes) holds, rounded down
# A float32 base keeps float32 activations: 176.1 against 119.1 KiB per token of a joint block in the saved-tensor
# counts of both precisions (docs/sd35-activations-fp32.json); the plan scales the bf16 coefficients by it.
FP32_ACTIVATIONS = 176.1 / 119.1
DECODE_GIB_PER_MEGAPIXEL = 0.5 / 0.262144  # the VAE decode of one 512 px image in half precision: ~0.5 GiB
LATENT_CHANNELS = 16
JOINT_DIM, POOLED_DIM = 4096, 2048
# Sum over an MMDiT's Linear layers of in_features², per transformer parameter: a full student's identity A
# factors (flowopd.adapters.full). Per block, attention 8 w² (+ 4 w² dual), the MLPs 2 x 17 w², the adaptive
# norms 2 w², against 36 w² of weights: 1.22 (the tiny transformer, measured: 1.20).
IDENTITY_FACTORS = 1.2


@dataclass
class StageSetting:
    """What of a stage's config the plan reads (see :func:`stage_setting`)."""

    stage: str
    micro_batch: int  # images per forward/backward
    batch: int  # images sampled per rollout (0: no rollout)
    micro_batch_choices: tuple[int, ...]  # what auto may pick (the divisors the config accepts)
    sequences: int  # 2 when trained with CFG (conditional and unconditional rows), else 1
    half: bool  # a half-precision frozen base
    lora_rank: int
    ema: bool = False
    frozen_adapters: tuple[int, ...] = ()  # ranks of the adapters held beside the trained one
    num_steps: int = 0
    decode: bool = False  # the rollout decodes images (rewards)
    decode_chunk: int = 0  # 0: the whole batch in one call
    full_student: bool = False  # OPD's student_params full: every Linear weight trained (flowopd.adapters.full)


@dataclass
class StagePlan:
    """One stage's plan: the micro-batch, the decode chunk and each term in GiB."""

    stage: str
    micro_batch: int
    decode_chunk: int
    terms: dict[str, float] = field(default_factory=dict)

    @property
    def peak_gib(self) -> float:
        t = self.terms
        resident = sum(v for k, v in t.items() if k not in ("activations", "decode"))
        return resident + max(t.get("activations", 0.0), t.get("decode", 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "micro_batch": self.micro_batch, "decode_chunk": self.decode_chunk,
                "peak_gib": round(self.peak_gib, 2), "terms": {k: round(v, 3) for k, v in self.terms.items()}}


def activation_bytes(family: Family, resolution: int, sequences: int, checkpointing: bool) -> float:
    """Counted-formula bytes of one image's training forward/backward (``sequences`` rows of it)."""
    image = family.image_tokens(resolution)
    tokens = image + TEXT_TOKENS
    c = family.coefficient
    if checkpointing:
        per = (tokens * (c(True, "rest") + (family.layers - 1) * c(True, "block_input"))
               + image * c(True, "dual_extra") * (family.dual_layers > 0))
    else:
        per = (tokens * (c(False, "rest") + family.layers * c(False, "joint"))
               + image * family.dual_layers * c(False, "dual_extra"))
    return per * sequences


def plan_stage(family: Family, setting: StageSetting, resolution: int, *, checkpointing: bool = True,
               cached_embeddings: bool = True) -> StagePlan:
    """The plan of one stage at its setting's micro-batch and decode chunk."""
    half = 2 if setting.half else 4
    lora = family.lora_params(setting.lora_rank)
    side = resolution // 8
    latent = LATENT_CHANNELS * side * side * 4
    prompt = (TEXT_TOKENS * JOINT_DIM + POOLED_DIM) * 4 * (2 if setting.sequences == 2 else 1)
    chunk = setting.decode_chunk or setting.batch
    terms = {
        "transformer": family.transformer_params * half / GIB,
        "position_table": family.pos_table * half / GIB,  # cast with the base (flowopd.training.dist.cast_base)
        "text_encoders": 0.0 if cached_embeddings else sum(family.text_encoder_params.values()) * half / GIB,
        "vae": family.vae_params * half / GIB,
        "frozen_adapters": sum(family.lora_params(r) for r in setting.frozen_adapters) * 4 / GIB,
        "trained_lora": lora * (16 + (4 if setting.ema else 0)) / GIB,
        "rollout": setting.batch * ((setting.num_steps + 1) * latent + prompt) / GIB,
        "activations": setting.micro_batch * activation_bytes(family, resolution, setting.sequences, checkpointing)
        * (1 if setting.half else FP32_ACTIVATIONS) / GIB,
        "decode": (chunk * DECODE_GIB_PER_MEGAPIXEL * resolution * resolution / 1e6
                   * (1 if setting.half else 2)) if setting.decode else 0.0,
    }
    if setting.full_student:  # a delta of every weight, with its Adam states, and the identity A factors
        terms["trained_lora"] = family.transformer_params * (16 + (4 if setting.ema else 0)) / GIB
        terms["identity_factors"] = IDENTITY_FACTORS * family.transformer_params * 4 / GIB
    return StagePlan(setting.stage, setting.micro_batch, chunk if setting.decode else 0, terms)


def auto_plan(family: Family, setting: StageSetting, resolution: int, gpu_memory_gib: float, **kw: Any) -> StagePlan:
    """The plan with the largest micro-batch (of the setting's choices) and decode chunk that fit
    ``gpu_memory_gib`` less the margin; the smallest of each when nothing fits (the caller refuses it)."""
    usable = gpu_memory_gib * (1 - MARGIN)

    def with_(micro: int, chunk: int) -> StagePlan:
        s = StageSetting(**{**setting.__dict__, "micro_batch": micro, "decode_chunk": chunk})
        return plan_stage(family, s, resolution, **kw)

    chunks = [c for c in range(setting.batch or 1, 0, -1) if not setting.batch or setting.batch % c == 0]
    chunk = next((c for c in chunks if with_(1, c).peak_gib <= usable), 1) if setting.decode else 0
    micro = next((m for m in sorted(setting.micro_batch_choices, reverse=True)
                  if with_(m, chunk).peak_gib <= usable), min(setting.micro_batch_choices))
    return with_(micro, chunk)


def fits(plan: StagePlan, gpu_memory_gib: float) -> bool:
    """Whether the plan's peak fits ``gpu_memory_gib`` with the margin left free."""
    return plan.peak_gib <= gpu_memory_gib * (1 - MARGIN)


def refusal(plan: StagePlan, gpu_memory_gib: float) -> str:
    """The message of a run refused before it starts: the plan's terms and what to change."""
    terms = ", ".join(f"{k} {v:.2f}" for k, v in plan.terms.items() if v)
    micro = ("lower train_batch_size" if plan.stage not in ("sft", "coldstart-sft") else
             "lower batch_size" if plan.stage == "sft" else "lower sft_batch_size")
    if plan.terms.get("decode", 0.0) > plan.terms.get("activations", 0.0):
        fix = f"lower decode_chunk (now {plan.decode_chunk} images per VAE call)"
    else:
        fix = f"{micro} (now {plan.micro_batch}), use mixed_precision bf16 and gradient_checkpointing"
    return (f"stage {plan.stage} needs about {plan.peak_gib:.1f} GiB at micro-batch {plan.micro_batch} "
            f"({terms} GiB), more than {gpu_memory_gib * (1 - MARGIN):.1f} of the GPU's {gpu_memory_gib:.1f} GiB "
            f"(10 % kept free): {fix}; `flowopd plan memory --stage {plan.stage} --micro-batch auto` finds what "
            "fits")


def family(name: str) -> Family:
    """The family ``name`` (``sd3.5-medium`` or ``sd3.5-large``)."""
    if name not in FAMILIES:
        raise ValueError(f"--model {name!r} is not a family the plan knows: use {' or '.join(FAMILIES)}")
    return FAMILIES[name]
