"""From a stage's config to what the memory plan reads of it (:class:`~.plan.StageSetting`)."""

from __future__ import annotations

from typing import Any

from ..config.presets import preset
from .plan import StageSetting

PLACEHOLDER_TEACHERS = {"compose": "teacher-compose", "text": "teacher-text", "prefer": "teacher-prefer"}
KINDS = {"grpo": "grpo", "nft": "nft", "awm": "awm", "sft": "sft", "coldstart-sft": "coldstart", "opd": "opd"}


def preset_config(stage: str, name: str, **overrides: Any):
    """The ``name`` preset's config of ``stage`` (cold start in mode ``sft``; placeholder teachers where a
    stage needs them: only their count matters to the plan)."""
    kind = KINDS[stage]
    if kind == "coldstart":
        overrides = {"mode": "sft", "teachers": dict(PLACEHOLDER_TEACHERS), **overrides}
    elif kind == "opd":
        overrides = {"teachers": dict(PLACEHOLDER_TEACHERS), **overrides}
    return preset(kind, name, **overrides)


def divisors(n: int) -> tuple[int, ...]:
    return tuple(d for d in range(1, n + 1) if n % d == 0)


def stage_setting(stage: str, cfg: Any, *, teacher_rank: int = 32) -> StageSetting:
    """What the plan reads of ``cfg`` for ``stage``. Teachers are adapters of ``teacher_rank``; an OPD
    student starts from their merge (rank: their sum), as the cold start gives it."""
    half = getattr(cfg, "mixed_precision", "no") != "no"
    if stage == "sft":
        return StageSetting(stage, cfg.batch_size, 0, (cfg.batch_size,), 1, half, cfg.lora_rank)
    if stage == "coldstart-sft":
        teachers = (teacher_rank,) * len(cfg.teachers)
        return StageSetting(stage, cfg.sft_batch_size, 0, (cfg.sft_batch_size,), 1, half, cfg.lora_rank,
                            frozen_adapters=teachers)
    per_process = cfg.batch_size  # images sampled per epoch and process
    common = {"micro_batch": cfg.train_batch_size, "batch": per_process, "half": half,
              "micro_batch_choices": divisors(per_process), "num_steps": cfg.num_steps,
              "decode_chunk": cfg.decode_chunk, "ema": bool(getattr(cfg, "ema", False))}
    guided = 2 if cfg.guidance > 1 else 1
    if stage == "opd":
        teachers = (teacher_rank,) * len(cfg.teachers)
        folder_anchor = cfg.beta_mar > 0 and cfg.mar_anchor != "base" and cfg.mar_anchor not in cfg.teachers
        anchor = (teacher_rank,) if folder_anchor else ()  # a teacher's task anchor is that teacher's adapter
        return StageSetting(stage, sequences=guided, lora_rank=teacher_rank * len(cfg.teachers),
                            frozen_adapters=teachers + anchor, decode=cfg.log_rewards,
                            full_student=getattr(cfg, "student_params", "lora") == "full", **common)
    # grpo trains the guided policy; nft and awm keep a second adapter (the old policy, the EMA target)
    frozen = (cfg.lora_rank,) if stage in ("nft", "awm") else ()
    return StageSetting(stage, sequences=guided, lora_rank=cfg.lora_rank, frozen_adapters=frozen, decode=True,
                        **common)
