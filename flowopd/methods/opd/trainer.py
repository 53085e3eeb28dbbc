"""Stage 2: on-policy distillation of the routed teachers into the student, with MAR (docs/method.md, "On-policy
distillation", "Routing", "MAR").

Per epoch the student samples SDE trajectories of prompts of all its tasks mixed (``per-sample`` and ``blend``
routing; ``prompt_tasks`` may add the ``mixed`` split, whose prompts touch two tasks) or of one task
(``alternate``: the released code's epoch schedule). Every sample is routed one-hot to the teacher adapter of its
prompt's task (a mixed prompt's highest-weight task), or with ``blend`` to the alpha-weighted mix of the
teachers of its task labels (:mod:`flowopd.methods.opd.routing`), and at each trained step the loss is
``flowopd.methods.opd.loss.distill_step_loss``
(``kl`` | ``pg`` | ``paper``, with ``weighting``) plus ``beta_mar`` times the same KL towards the anchor
(the base model with adapters disabled, or any adapter). The per-step KL to the teacher and to the anchor
is logged as ``kl/teacher/step_<j>`` and ``kl/anchor/step_<j>``, the teacher KL per task as
``kl/teacher/<task>`` (``kl/teacher/mixed`` for mixed prompts), and each sample's own task rewards as
``reward/<task>`` (``log_rewards``; a mixed prompt is scored by each of its tasks' rewards).

Teachers, anchor and student are named adapters on one frozen base: ``teacher_<task>`` (one per distinct
folder), ``anchor`` (when ``mar_anchor`` is a folder) and ``cfg.adapter_name``; only the student trains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from accelerate import Accelerator

from ... import metric_names as names
from ...adapters import (
    adapter_deltas,
    adapter_guidance,
    add_full_delta,
    drop_adapter,
    identity_factors,
    replace_adapter,
    skip_identities,
    trainable_parameters,
    use_adapter,
)
from ...config.fields import task_reward
from ...evaluate import mean_task_reward
from ...models.base import FlowModel, PromptEmbeds
from ...sampling import sde_step, std_dev_t
from ...training.dist import MetricSums
from ...training.loop import Callback, RLTrainer, TrainResult
from ...training.rollout import Rollout, epoch_seed, gather_scores, reward_metrics, score_rollout
from ...world.prompts import MIXED, MIXED_TASKS
from ...world.splits import load_prompts
from ..grpo.trainer import gather_advantages
from .config import OPDConfig
from .loss import alternate_task, blend_routes, distill_step_loss, kl_scales, route_teachers, routed_velocity
from .sampling import distance_weights, gradient_cosines

log = logging.getLogger(__name__)
ANCHOR = "anchor"
INIT = "student_init"  # the init folder, read for its delta when the student trains every weight


class OPDTrainer(RLTrainer):
    """Flow-OPD on the student adapter ``cfg.adapter_name``; see the module docstring."""

    stage = "opd"

    def __init__(self, model: FlowModel, cfg: OPDConfig, out_dir: str | Path, *,
                 accelerator: Accelerator | None = None, resume: bool = True):
        if not isinstance(cfg, OPDConfig):
            raise TypeError(f"train_opd needs an OPDConfig, got {type(cfg).__name__}")
        super().__init__(model, cfg, out_dir, accelerator)
        self.tasks = list(cfg.epochs_per_task if cfg.routing == "alternate" else cfg.prompt_tasks)
        # The rewards that score samples: the tasks, with the mixed prompt set standing for the tasks it touches.
        self.reward_tasks = list(dict.fromkeys(t for s in self.tasks for t in (MIXED_TASKS if s == MIXED else (s,))))
        self.guidance: dict[str | None, float] = {None: cfg.guidance}  # adapter name -> the CFG it is sampled at
        self.teachers = self.load_teachers()
        self.anchor = self.load_anchor() if cfg.beta_mar > 0 else None
        self.teacher_rewards: dict[str, float] = dict(cfg.teacher_rewards)  # task sampling by distance
        self.student_rewards: dict[str, float] = {}  # a running mean of the student's rollout rewards per task
        self.kl_scales: dict[str, float] = {}  # the previous epoch's mean KLs, which kl_norm divides by
        self.init_student(cfg.init, resume)
        if cfg.task_sampling == "distance" and set(self.distance_tasks()) - set(self.teacher_rewards):
            self.teacher_rewards.update(self.measure_teacher_rewards(
                [t for t in self.distance_tasks() if t not in self.teacher_rewards]))

    def new_student(self, init: str | Path | None) -> None:
        """``student_params`` full: a weight delta on every Linear layer, started at the init's delta (docs/method.md,
        "A fully fine-tuned student"); else the init's LoRA or a fresh one."""
        if self.cfg.student_params != "full":
            return super().new_student(init)
        deltas = None
        if init is not None:
            replace_adapter(self.model, init, INIT, field="init")
            deltas = adapter_deltas(self.model, INIT)
            drop_adapter(self.model, INIT)
        drop_adapter(self.model, self.name)
        add_full_delta(self.model, self.name, deltas)

    def student_parameters(self) -> list[torch.nn.Parameter]:
        """The student's parameters; a full delta trains its B factors (the weight deltas), its A stay the
        identity."""
        params = trainable_parameters(self.model, self.name)
        if self.cfg.student_params != "full":
            return params
        skip_identities(self.model, self.name)  # a resumed checkpoint's A factors are plain Linear layers
        fixed = {id(p): p for p in identity_factors(self.model, self.name)}
        for p in fixed.values():
            p.requires_grad_(False)
        return [p for p in params if id(p) not in fixed]

    def load_teachers(self) -> dict[str, str]:
        """Task -> teacher adapter name, loading each distinct folder once as ``teacher_<first task>``."""
        names: dict[str, str] = {}
        by_folder: dict[Path, str] = {}
        for task, folder in self.cfg.teachers.items():
            key = Path(folder).expanduser().resolve()
            if key not in by_folder:
                by_folder[key] = f"teacher_{task}"
                if by_folder[key] == self.name:
                    raise ValueError(f"adapter_name={self.name!r} is taken by a teacher: name the student otherwise")
                replace_adapter(self.model, folder, by_folder[key], field=f"teachers[{task!r}]")
                self.guidance[by_folder[key]] = self.own_guidance(folder)
            names[task] = by_folder[key]
        log.info("opd teachers: %s", ", ".join(f"{t} -> {n} (guidance {self.guidance[n]:g})" for t, n in names.items()))
        return names

    def own_guidance(self, folder: str | Path) -> float:
        """The CFG scale a teacher or anchor folder is queried at: ``teacher_guidance`` when set, else its
        adapter's own (docs/method.md, "Guidance"), else the student's."""
        if self.cfg.teacher_guidance is not None:
            return float(self.cfg.teacher_guidance)
        return adapter_guidance(folder, self.cfg.guidance)

    def load_anchor(self) -> str | None:
        """The MAR anchor: None for ``base``, a teacher's adapter for its task, else a folder loaded as ``anchor``."""
        anchor = self.cfg.mar_anchor
        if anchor == "base":
            return None
        if anchor in self.teachers:
            return self.teachers[anchor]
        if not Path(anchor).expanduser().is_dir():
            raise ValueError(f"mar_anchor={anchor!r} is invalid: use 'base', a teacher's task "
                             f"({', '.join(self.teachers)}) or an existing adapter folder")
        if self.name == ANCHOR:
            raise ValueError("adapter_name='anchor' is taken by the MAR anchor: name the student otherwise")
        replace_adapter(self.model, anchor, ANCHOR, field="mar_anchor")
        self.guidance[ANCHOR] = self.own_guidance(anchor)
        return ANCHOR

    def sample_tasks(self) -> list[str]:
        return self.tasks

    def routes(self, records: list[dict]) -> list[str] | list[dict[str, float]]:
        """Each record's teacher: its adapter's name (one-hot routings) or adapter -> weight (``blend``), as
        :func:`flowopd.methods.opd.loss.routed_velocity` takes them."""
        if self.cfg.routing == "blend":
            return blend_routes(records, self.teachers)
        return route_teachers(records, self.teachers)

    def epoch_tasks(self, epoch: int) -> Mapping[str, float]:
        """Prompt task weights of ``epoch``: all tasks (per-sample), the schedule's one task (alternate), or the
        tasks in proportion to the student's remaining distance to each teacher (``task_sampling`` distance;
        the mixed set, if any, keeps its share)."""
        cfg = self.cfg
        if cfg.routing == "alternate":
            return {alternate_task(epoch, cfg.epochs_per_task): 1.0}
        if cfg.task_sampling != "distance" or not self.student_rewards:
            return cfg.prompt_tasks
        mixed = cfg.prompt_tasks.get(MIXED, 0.0) / sum(cfg.prompt_tasks.values())
        weights = distance_weights(self.student_rewards, {t: self.teacher_rewards[t] for t in self.distance_tasks()},
                                   cfg.distance_floor)
        return {**{t: w * (1 - mixed) for t, w in weights.items()}, **({MIXED: mixed} if mixed else {})}

    def distance_tasks(self) -> list[str]:
        return [t for t in self.cfg.prompt_tasks if t != MIXED]

    @torch.no_grad()
    def measure_teacher_rewards(self, tasks: list[str]) -> dict[str, float]:
        """Each task's teacher's mean reward on the first ``reference_prompts`` train prompts of the task (ODE
        samples at the teacher's guidance, seeds from the run's): the target of distance sampling."""
        cfg, out = self.cfg, {}
        for task in tasks:
            records = load_prompts(task, "train")[:cfg.reference_prompts]
            seeds = [epoch_seed(cfg.seed, 0, i, f"reference:{task}") for i in range(len(records))]
            teacher = self.teachers[task]
            reward = task_reward(cfg.task_rewards, task)
            out[task] = mean_task_reward(self.model, teacher, records, seeds, reward=reward, steps=cfg.eval_steps,
                                         guidance=self.guidance[teacher])
        log.info("opd: teacher rewards %s", ", ".join(f"{t} {r:.3f}" for t, r in out.items()))
        return out

    def extra_state(self) -> dict:
        return {"teacher_rewards": dict(self.teacher_rewards), "student_rewards": dict(self.student_rewards),
                "kl_scales": dict(self.kl_scales)}

    def load_extra_state(self, state: dict) -> None:
        self.teacher_rewards.update(state.get("teacher_rewards", {}))
        self.student_rewards = dict(state.get("student_rewards", {}))
        self.kl_scales = dict(state.get("kl_scales", {}))

    def track_student_rewards(self, metrics: Mapping[str, float]) -> None:
        """Fold this epoch's mean reward per task into the running mean the distance sampling reads (half
        this epoch, half the past: a few epochs' memory)."""
        for task in self.distance_tasks():
            value = metrics.get(names.reward(task_reward(self.cfg.task_rewards, task)))
            if value is not None:
                old = self.student_rewards.get(task)
                self.student_rewards[task] = float(value) if old is None else 0.5 * old + 0.5 * float(value)

    def gradient_conflict(self, roll: Rollout, routes, keep: list[int]) -> dict[str, float]:
        """``conflict/<a>~<b>``: the cosine between two tasks' gradients of the distillation loss on the LoRA,
        each over up to ``train_batch_size`` of its rows and every trained step (this process's rows)."""
        grads = {}
        for task in self.distance_tasks():
            rows = [i for i in keep if roll.records[i]["task"] == task][:self.cfg.train_batch_size]
            if not rows:
                continue
            self.opt.zero_grad(set_to_none=True)
            steps = self.sde_steps(self.epoch)
            with use_adapter(self.model, self.name):  # as in accumulate: the student is the ambient adapter
                for j in steps:
                    loss, _ = self.step_loss(roll, routes, rows, j)
                    (loss / len(steps)).backward()
            grads[task] = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self.opt.zero_grad(set_to_none=True)
        return {f"conflict/{pair}": cos for pair, cos in gradient_cosines(grads).items()}

    def teacher_velocity(self, teachers: list[str], x: torch.Tensor, sigma: float, cond: PromptEmbeds,
                         uncond: PromptEmbeds | None) -> torch.Tensor:
        """Velocity [B, ...] of each row's routed teacher adapter at that teacher's own guidance: the teacher's
        sampling velocity (``flowopd.bench`` overrides it to measure the released code's layout: one full model
        copy per teacher)."""
        if uncond is None and any(g != 1.0 for g in self.guidance.values()):  # a CFG-free student's rollout
            uncond = self.uncond(x.shape[0])
        return routed_velocity(self.model, teachers, x, sigma, cond, uncond, self.guidance)

    def step_loss(self, roll: Rollout, routes: list[str], rows: list[int], j: int) -> tuple[torch.Tensor, dict]:
        """Distillation loss (+ MAR) of rows ``rows`` at step ``j``, and the KL metrics."""
        cfg = self.cfg
        s, s_next = float(roll.sigmas[j]), float(roll.sigmas[j + 1])
        student = self.transition(self.name, roll, rows, j)
        with torch.no_grad():
            x, (cond, uncond) = roll.latents[rows, j], roll.embeds(rows)
            v_t = self.teacher_velocity([routes[i] for i in rows], x, s, cond, uncond)
            teacher = sde_step(v_t, x, s, s_next, cfg.noise_level, sigma_max=roll.sigma_max,
                               prev_sample=roll.latents[rows, j + 1])
            anchor_mean = (self.transition(self.anchor, roll, rows, j, self.guidance.get(self.anchor)).mean
                           if cfg.beta_mar > 0 else None)
        tasks = [roll.records[i]["task"] for i in rows]
        out = distill_step_loss(cfg.loss_mode, student, teacher, roll.log_probs[rows, j], std_dev_t(student, s, s_next),
                                weighting=cfg.weighting, sigma=s, sigma_next=s_next, anchor_mean=anchor_mean,
                                beta_mar=cfg.beta_mar, clip_range=cfg.clip_range, adv_clip=cfg.adv_clip,
                                kl_norm=cfg.kl_norm, tasks=tasks, step=j, kl_scales=self.kl_scales)
        values: dict = {names.KL_TEACHER: out.kl_teacher, names.per_step(names.KL_TEACHER, j): out.kl_teacher}
        for task in set(tasks):
            values[names.per_task(names.KL_TEACHER, task)] = out.kl_teacher[[t == task for t in tasks]]
        if out.kl_anchor is not None:
            values.update({names.KL_ANCHOR: out.kl_anchor, names.per_step(names.KL_ANCHOR, j): out.kl_anchor})
        return out.loss, values

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.cfg
        roll = self.make_rollout(epoch, self.epoch_tasks(epoch))
        routes = self.routes(roll.records)
        keep, out = list(range(len(roll))), {}
        if cfg.log_rewards:
            by_reward = {task_reward(cfg.task_rewards, t): t for t in self.reward_tasks}
            scores = score_rollout(self.model, roll, dict.fromkeys(by_reward, 1.0), self.reward_tasks, by_reward,
                                   decode_chunk=cfg.decode_chunk)
            out = reward_metrics(gather_scores(self.acc, roll, scores))
            if cfg.mask_zero_std:
                keep = gather_advantages(self.acc, scores.total, cfg.group_size, mask_zero_std=True).keep
        if cfg.conflict_every and (epoch + 1) % cfg.conflict_every == 0:
            out.update(self.gradient_conflict(roll, routes, keep))
        if cfg.task_sampling == "distance":
            weights = self.epoch_tasks(epoch)
            out.update({f"task_weight/{t}": float(w) / sum(weights.values()) for t, w in weights.items()})
            self.track_student_rewards(out)
        metrics = MetricSums()
        metrics.add("trained_fraction", len(keep) / len(roll))
        self.accumulate(keep, lambda rows, j: self.step_loss(roll, routes, rows, j), metrics)
        means = metrics.means(self.acc)
        self.kl_scales = kl_scales(means)
        return {**means, **out}


def train_opd(model: FlowModel, cfg: OPDConfig, out_dir: str | Path, *, callback: Callback | None = None,
              should_stop: Callable[[], bool] | None = None, resume: bool = True,
              accelerator: Accelerator | None = None) -> TrainResult:
    """Distil ``cfg.teachers`` into the student adapter; arguments as :func:`flowopd.methods.grpo.trainer.train_grpo`.

    The student starts from ``cfg.init`` (a cold start's adapter folder) or a fresh LoRA, unless a checkpoint
    in ``out_dir`` is resumed.

    Raises:
        flowopd.adapters.AdapterError: a teacher, anchor or init folder is not an adapter of this base model.
        ValueError: a prompt task has no teacher, or ``mar_anchor`` names nothing.
    """
    return OPDTrainer(model, cfg, out_dir, accelerator=accelerator, resume=resume).run(callback, should_stop)
