"""The benchmark's stages for one seed, in order, each with the config of its trainer.

Per seed (``OUT/seed<k>/<stage>/``)::

    base                       evaluation of the base model (no training)
    teacher-<task> x 4         the task's teacher (budget ``teacher``): GRPO on its reward and prompts, or the
                               source ``teachers`` names: nft, awm (the same budget), sft (a LoRA on
                               ``sft_images`` renders of the task, ``OUT/data/<task>``, its own steps)
    grpo-mix                   GRPO on all four rewards at once, at the distillation stage's compute
    <S>-mix                    with nft, awm or sft teachers: the joint baseline, one adapter trained with
                               algorithm S (``joint``) on every reward task's prompts and the flow-matching loss
                               on every sft task's image set at once, at the distillation stage's compute
    coldstart-merge            exact merge of the four teachers (no optimizer steps)
    coldstart-sft              SFT on teacher samples (the init of opd-sft; not a row, not evaluated)
    opd, opd-no-mar, opd-sft   distillation from merge init with MAR, without MAR, and from SFT init
    seesaw-<task> x 4          GRPO with the rewards stacked one by one (compose; +text; +prefer; +quality)
    grpo-mix-long              GRPO-Mix with the optimizer steps of 4 teachers + cold start + distillation
    <S>-mix-long               the joint baseline with those steps

The longest stage comes last, so a benchmark cut short (a session's end) has finished as many rows as it can.

A stage whose trainer config equals an earlier one's (``seesaw-compose`` is ``teacher-compose``; with equal
budgets ``seesaw-quality`` is ``grpo-mix``) is not run twice: ``same_as`` names the stage it reuses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..layout import ADAPTER_DIR
from ..world.prompts import TASKS
from .config import ReproduceConfig, StageBudget

ROWS = ("base", "teacher-compose", "teacher-text", "teacher-prefer", "teacher-quality", "grpo-mix",
        "coldstart-merge", "opd", "opd-no-mar", "opd-sft", "grpo-mix-long")
SEESAW = tuple(f"seesaw-{task}" for task in TASKS)  # rows of the seesaw table after "base"


@dataclass
class StageSpec:
    """One stage of a seed's plan.

    Attributes:
        name: folder name under ``OUT/seed<k>/``; a row name for the rows of the main table.
        kind: ``eval`` (the base, nothing trained), ``grpo``, ``nft``, ``awm``, ``sft``, ``coldstart`` or ``opd``.
        config: the trainer's config (GRPOConfig, NFTConfig, ...); None for ``eval``.
        evaluate: whether the stage's adapter is evaluated (``coldstart-sft`` is only an init).
        same_as: an earlier stage with an identical config whose results this one reuses.
    """

    name: str
    kind: str
    config: Any = None
    evaluate: bool = True
    same_as: str | None = None

    def folder(self, seed_dir: Path) -> Path:
        return seed_dir / (self.same_as or self.name)

    def planned_compute(self) -> dict[str, int]:
        """Optimizer steps and images this stage's own training takes (0 for eval and merges)."""
        cfg = self.config
        if self.kind in ("grpo", "opd", "nft", "awm"):
            return {"optimizer_steps": cfg.epochs * cfg.optimizer_steps_per_epoch,
                    "images": cfg.epochs * cfg.batch_size}
        if self.kind == "sft":
            return {"optimizer_steps": cfg.steps, "images": 0}  # no image sampled: it trains on a fixed set
        if self.kind == "coldstart" and cfg.mode == "sft":
            return {"optimizer_steps": cfg.sft_steps,
                    "images": cfg.sft_samples_per_task * cfg.sft_best_of * len(cfg.teachers)}
        return {"optimizer_steps": 0, "images": 0}


def _rl_fields(cfg: ReproduceConfig, budget: StageBudget, seed: int) -> dict[str, Any]:
    return {**budget.fields(), "seed": seed, "model": cfg.model, "num_steps": cfg.num_steps,
            "eval_steps": cfg.eval_steps, "checkpoint_every": cfg.checkpoint_every, "sample_every": 0,
            "ema_warmup": cfg.ema_warmup, **cfg.rl}


def _grpo(cfg: ReproduceConfig, budget: StageBudget, seed: int, tasks: tuple[str, ...]) -> Any:
    from ..methods.grpo.config import GRPOConfig

    weights = {t: 1.0 for t in tasks}
    return GRPOConfig.from_dict({**_rl_fields(cfg, budget, seed), **cfg.grpo, "rewards": weights,
                                 "prompt_tasks": weights})


def _forward_rl(cfg: ReproduceConfig, source: str, budget: StageBudget, seed: int, tasks: tuple[str, ...],
                sets: dict[str, str]) -> Any:
    from ..config.base import config_class, config_kinds

    config_kinds()  # registers the nft and awm kinds
    weights = {t: 1.0 for t in tasks}
    return config_class(source).from_dict({
        **budget.fields(), "seed": seed, "model": cfg.model, "num_steps": cfg.num_steps, "eval_steps": cfg.eval_steps,
        "checkpoint_every": cfg.checkpoint_every, "sample_every": 0, **getattr(cfg, source), "rewards": weights,
        "prompt_tasks": weights, "sft_data": sets})


def _sft(cfg: ReproduceConfig, seed: int, data: str, reg: str) -> Any:
    from ..methods.sft.config import SFTConfig

    return SFTConfig.from_dict({"checkpoint_every": 100, **cfg.sft, "seed": seed, "model": cfg.model, "data": data,
                                "reg_data": reg, "eval_steps": cfg.eval_steps, "sample_every": 0})


def data_dir(seed_dir: Path, task: str) -> Path:
    """The image set of an sft teacher of ``task``: ``OUT/data/<task>`` (the same for every seed); its
    regularization set (``sft_prior``) is ``OUT/data/reg-<task>``."""
    return seed_dir.parent / "data" / task


def _teacher(cfg: ReproduceConfig, seed: int, seed_dir: Path, task: str) -> StageSpec:
    source = cfg.source(task)
    if source == "grpo":
        config = _grpo(cfg, cfg.teacher, seed, (task,))
    elif source == "sft":
        reg = str(data_dir(seed_dir, f"reg-{task}")) if cfg.sft_prior else ""
        config = _sft(cfg, seed, str(data_dir(seed_dir, task)), reg)
    else:
        config = _forward_rl(cfg, source, cfg.teacher, seed, (task,), {})
    return StageSpec(f"teacher-{task}", source, config)


def _joint(cfg: ReproduceConfig, seed: int, seed_dir: Path, budget: StageBudget, name: str) -> StageSpec | None:
    """The ``<S>-mix`` row of ``budget``: every reward task by algorithm S, every sft task by its image set."""
    source = cfg.joint_source()
    if source is None:
        return None
    sets = {t: str(data_dir(seed_dir, t)) for t in TASKS if cfg.source(t) == "sft"}
    rewarded = tuple(t for t in TASKS if t not in sets)
    return StageSpec(name.format(source=source), source, _forward_rl(cfg, source, budget, seed, rewarded, sets))


def rows(plan: list[StageSpec]) -> list[str]:
    """The main table's rows present in ``plan``: :data:`ROWS` and the joint ``<S>-mix`` rows after GRPO-Mix's."""
    names = [spec.name for spec in plan]
    joint = [n for n in names if n.endswith("-mix") and n != "grpo-mix"]
    joint_long = [n for n in names if n.endswith("-mix-long") and n != "grpo-mix-long"]
    out = []
    for row in ROWS:
        out += [row] if row in names else []
        out += joint if row == "grpo-mix" else joint_long if row == "grpo-mix-long" else []
    return out


def _opd(cfg: ReproduceConfig, seed: int, teachers: dict[str, str], init: str, beta_mar: float) -> Any:
    from ..methods.opd.config import OPDConfig

    return OPDConfig.from_dict({**_rl_fields(cfg, cfg.distill, seed), **cfg.opd, "teachers": teachers, "init": init,
                                "prompt_tasks": {t: 1.0 for t in teachers}, "beta_mar": beta_mar})


def _coldstart(cfg: ReproduceConfig, seed: int, mode: str, teachers: dict[str, str]) -> Any:
    from ..coldstart.config import ColdStartConfig

    return ColdStartConfig.from_dict({**cfg.coldstart, "mode": mode, "teachers": teachers, "model": cfg.model,
                                      "seed": seed})


def long_mix_budget(cfg: ReproduceConfig, coldstart_steps: int = 0, teachers: list[StageSpec] | None = None
                    ) -> StageBudget:
    """GRPO-Mix given the optimizer steps of the 4 teachers (``teachers``: their planned steps; default: 4 GRPO
    teachers of budget ``teacher``), the cold start and the distillation.

    An sft teacher's step trains ``batch_size`` images at one noise level each, an RL teacher's step
    ``teacher.batch_size / optimizer_steps_per_epoch`` rollouts at ``num_steps`` levels (and samples them), so
    it counts as ``ceil(steps * batch_size / (that x num_steps))`` RL steps: forward-backward passes alike.

    Example:
        >>> long_mix_budget(ReproduceConfig.preset("default")).epochs  # 4 x 8 teacher + 16 distillation epochs
        48
    """
    per_rl_step = cfg.teacher.batch_size / cfg.teacher.optimizer_steps_per_epoch * cfg.num_steps
    teacher_steps = (len(TASKS) * cfg.teacher.optimizer_steps if teachers is None
                     else sum(math.ceil(s.config.steps * s.config.batch_size / per_rl_step) if s.kind == "sft"
                              else s.planned_compute()["optimizer_steps"] for s in teachers))
    steps = teacher_steps + coldstart_steps + cfg.distill.optimizer_steps
    return cfg.distill.with_steps(steps)


def build_plan(cfg: ReproduceConfig, seed: int, seed_dir: str | Path) -> list[StageSpec]:
    """The stages of seed ``seed`` in the order they run (see the module docstring).

    Raises:
        ValueError: an override in ``cfg`` is not a valid field of a stage config (the message names it).
    """
    seed_dir = Path(seed_dir).resolve()

    def adapter(stage: str) -> str:
        return str(seed_dir / stage / ADAPTER_DIR)

    teachers = {task: adapter(f"teacher-{task}") for task in TASKS}
    merge = _coldstart(cfg, seed, "merge", teachers)
    plan = [StageSpec("base", "eval")]
    plan += [_teacher(cfg, seed, seed_dir, t) for t in TASKS]
    plan.append(StageSpec("grpo-mix", "grpo", _grpo(cfg, cfg.distill, seed, TASKS)))
    plan += [s for s in [_joint(cfg, seed, seed_dir, cfg.distill, "{source}-mix")] if s]
    plan += [StageSpec("coldstart-merge", "coldstart", merge),
             StageSpec("coldstart-sft", "coldstart", _coldstart(cfg, seed, "sft", teachers), evaluate=False),
             StageSpec("opd", "opd", _opd(cfg, seed, teachers, adapter("coldstart-merge"), cfg.beta_mar)),
             StageSpec("opd-no-mar", "opd", _opd(cfg, seed, teachers, adapter("coldstart-merge"), 0.0)),
             StageSpec("opd-sft", "opd", _opd(cfg, seed, teachers, adapter("coldstart-sft"), cfg.beta_mar))]
    if cfg.seesaw:
        plan += [StageSpec(f"seesaw-{t}", "grpo", _grpo(cfg, cfg.teacher, seed, TASKS[:k + 1]))
                 for k, t in enumerate(TASKS)]
    merge_steps = StageSpec("", "coldstart", merge).planned_compute()["optimizer_steps"]
    long_budget = long_mix_budget(cfg, merge_steps, [s for s in plan if s.name.startswith("teacher-")])
    if cfg.grpo_mix_long:
        plan.append(StageSpec("grpo-mix-long", "grpo", _grpo(cfg, long_budget, seed, TASKS)))
    if cfg.joint_long:
        plan += [s for s in [_joint(cfg, seed, seed_dir, long_budget, "{source}-mix-long")] if s]
    seen: dict[str, str] = {}
    for spec in plan:
        if spec.config is None:
            continue
        key = spec.config.to_json()
        if key in seen:
            spec.same_as = seen[key]
        else:
            seen[key] = spec.name
    return plan
