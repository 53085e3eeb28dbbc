"""Distillation: plan (configs, CLI, pre-flight), start a cold start + OPD run, or the whole pipeline.

A plan is a JSON-safe dict: ``{"name", "teachers": {task: teacher name}, "train": {task: teacher config (its
``kind`` is the algorithm)}, "coldstart": config | None, "opd": config}``. Starting it submits, in this order, a
teacher run per task of ``train`` (each registered as a teacher), a ``coldstart`` run (unless its mode is
``none``) and the ``opd`` run, whose ``teachers`` and ``init`` name the earlier runs' ids; ``freeze`` resolves
them to their ``adapter/`` folders, which exist by the time the run starts because the queue starts queued runs
oldest first, one at a time (setting ``max_concurrent`` = 1, the default).

The pipeline's teachers are trained by each task's strongest source by default (:data:`STRONGEST_SOURCES`:
NFT for compose, SFT on the world's renders for text, AWM for prefer and quality), or all by one algorithm.
When it trains all four that way on the tiny model, its merge cold start weights them as the strong
reproduction does (:data:`STRONGEST_MERGE_WEIGHTS`).
The SFT teacher's image set is written to ``HOME/world-sets/<task>-<n>`` when the plan starts.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from flowopd.config.choices import COLDSTART_MODES
from flowopd.config.presets import STRONGEST_MERGE_WEIGHTS, STRONGEST_SOURCES, preset
from flowopd.reward_names import sd35_rewards
from flowopd.world.dataset import ensure_image_set
from flowopd.world.prompts import TASKS

from ..storage import queue
from .base_models import BaseModel
from .config_forms import build_config
from .preflight import Estimate, check_run_size, estimate
from .teachers import TeacherRequest, check_name, define_teacher, teacher_ref


@dataclass(frozen=True)
class DistillChoice:
    """The Distill form: teachers (task -> teacher name), tasks to train a teacher for first (the pipeline),
    routing, loss mode, MAR anchor and weight, cold start, the preset and the budget fields (widget values)."""

    name: str
    teachers: dict
    train_tasks: tuple = ()
    routing: str = "per-sample"
    loss_mode: str = "kl"
    mar_anchor: str = "base"
    beta_mar: float = 0.02
    coldstart: str = "merge"
    preset: str = "quick"
    settings: dict | None = None  # OPD budget fields from the form; None: the preset's
    sources: str = "strongest"  # the pipeline teachers' algorithm: strongest (per task) or one for all


PIPELINE_SOURCES = ("strongest", "grpo", "nft", "awm")
WORLD_SETS_DIR = "world-sets"
WORLD_SET_IMAGES = 512  # renders per SFT image set: the strong reproduction's (flowopd reproduce --budget strong)


def teacher_sources(policy: str, tasks, backend: str) -> dict[str, str]:
    """Task -> the algorithm that trains its pipeline teacher under ``policy`` (strongest | grpo | nft | awm).

    The world's renders suit only the tiny model, so on another base ``strongest`` trains ``text`` with NFT,
    the strongest reward-driven source of text in the teacher benchmark.

    Example:
        >>> teacher_sources("strongest", ["text", "prefer"], "tiny")
        {'text': 'sft', 'prefer': 'awm'}
    """
    if policy not in PIPELINE_SOURCES:
        raise ValueError(f"Teacher algorithm {policy!r} is unknown: use one of {', '.join(PIPELINE_SOURCES)}")
    if policy != "strongest":
        return {t: policy for t in tasks}
    table = {**STRONGEST_SOURCES, **({} if backend == "tiny" else {"text": "nft"})}
    return {t: table[t] for t in tasks}


def strongest_pipeline(choice: DistillChoice, train, base: BaseModel) -> bool:
    """Whether the plan trains all four tasks' teachers from the strongest sources on the tiny model: the case
    whose weighted merge init (:data:`STRONGEST_MERGE_WEIGHTS`) was measured (docs/notes/quick-pipeline.md)."""
    return choice.sources == "strongest" and set(train) == set(TASKS) and base.backend == "tiny"


def world_set(store, task: str):
    """The folder of the pipeline's SFT image set of ``task`` (written when a plan starts)."""
    return store.path(f"{WORLD_SETS_DIR}/{task}-{WORLD_SET_IMAGES}")


def teacher_config(store, algorithm: str, task: str, preset_name: str, base: BaseModel, seed: int) -> dict:
    """The pipeline teacher's config of ``task``: the preset of ``algorithm`` on the task's reward (the paper's
    real-image reward on an SD3 base) and prompts, or on the world's renders of the task (sft)."""
    fields: dict = {"model": base.ref, "seed": seed}
    if algorithm == "sft":
        fields["data"] = str(world_set(store, task))
    else:
        rewards = sd35_rewards({task: 1.0}) if base.backend == "sd3" else {task: 1.0}
        fields.update(rewards=rewards, prompt_tasks={task: 1.0})
    return preset(algorithm, preset_name, **fields).to_dict()


# The cold start fields the preset sets for the plan (the mode, teachers and seed come from the choice).
COLDSTART_PRESET_FIELDS = ("lora_rank", "lora_alpha", "weights", "merge_weighting", "gain_prompts")


def plan(store, choice: DistillChoice, base: BaseModel) -> dict:
    """The validated plan of ``choice`` (nothing is submitted). ``ValueError`` names the field and the fix."""
    name = (choice.name or "").strip() or "student"
    teachers = {t: n for t, n in choice.teachers.items() if n}
    train = [t for t in choice.train_tasks if t]
    for task in (*teachers, *train):
        if task not in TASKS:
            raise ValueError(f"Teachers: {task!r} is not a task: use {', '.join(TASKS)}")
    for task, teacher in teachers.items():
        row = store.teacher(teacher)
        if row is None:
            raise ValueError(f"Teacher for {task}: {teacher!r} does not exist: refresh the lists and pick again")
        if row["task"] != task:
            raise ValueError(f"Teacher for {task}: {teacher!r} is a {row['task']} teacher: pick a {task} teacher")
    tasks = sorted(set(teachers) | set(train), key=TASKS.index)
    if not tasks:
        raise ValueError("Teachers: none chosen: pick a teacher for at least one task, or tick tasks to train "
                         "teachers for (whole pipeline)")
    if choice.mar_anchor not in ("base", *tasks):
        raise ValueError(f"MAR anchor {choice.mar_anchor!r} has no teacher here: use base or one of {tasks}")
    if choice.coldstart not in COLDSTART_MODES:
        raise ValueError(f"Cold start {choice.coldstart!r} is unknown: use one of {', '.join(COLDSTART_MODES)}")
    refs = {t: (teacher_ref(store, teachers[t]) if t in teachers and t not in train else f"<run id of {name}-{t}>")
            for t in tasks}
    fixed = {"model": base.ref, "teachers": refs, "prompt_tasks": {t: 1.0 for t in tasks}, "routing": choice.routing,
             "epochs_per_task": {t: 1 for t in tasks} if choice.routing == "alternate" else {},
             "loss_mode": choice.loss_mode, "mar_anchor": choice.mar_anchor, "beta_mar": float(choice.beta_mar),
             "init": None if choice.coldstart == "none" else f"<run id of {name}-coldstart>"}
    settings = choice.settings if choice.settings is not None else {}
    if choice.settings is None:
        base_cfg = preset("opd", choice.preset, teachers={t: "-" for t in tasks},
                          prompt_tasks={t: 1.0 for t in tasks}).to_dict()
        settings = {k: v for k, v in base_cfg.items() if k not in fixed and k != "kind"}
    opd = build_config("opd", settings, fixed, "Distillation settings")
    check_run_size("opd", opd, base)
    coldstart = None
    if choice.coldstart != "none":
        extra = {k: v for k, v in preset("coldstart", choice.preset, teachers=refs).to_dict().items()
                 if k.startswith("sft_") or k in COLDSTART_PRESET_FIELDS}
        equal = not extra.get("weights") and extra.get("merge_weighting", "equal") == "equal"
        if choice.coldstart == "merge" and equal and strongest_pipeline(choice, train, base):
            extra["weights"] = dict(STRONGEST_MERGE_WEIGHTS)
        coldstart = build_config("coldstart", extra, {"mode": choice.coldstart, "teachers": refs,
                                                      "model": base.ref, "seed": opd["seed"]}, "Cold start")
    sources = teacher_sources(choice.sources, train, base.backend)
    train_cfgs = {t: teacher_config(store, sources[t], t, choice.preset, base, opd["seed"]) for t in train}
    for cfg in train_cfgs.values():
        check_run_size(cfg["kind"], cfg, base)
    return {"name": name, "teachers": {t: teachers[t] for t in tasks if t in teachers and t not in train},
            "train": train_cfgs, "coldstart": coldstart, "opd": opd}


def plan_estimate(store, plan_: dict, base: BaseModel, arch: dict | None = None) -> Estimate:
    stages = [(cfg["kind"], cfg) for cfg in plan_["train"].values()]
    labels = [f"{task} teacher ({cfg['kind']})" for task, cfg in plan_["train"].items()]
    if plan_["coldstart"]:
        stages.append(("coldstart", plan_["coldstart"]))
        labels.append(f"cold start ({plan_['coldstart']['mode']})")
    stages.append(("opd", plan_["opd"]))
    labels.append("distillation (opd)")
    return estimate(store, stages, base, arch, labels)


def start(store, plan_: dict, base: BaseModel, *, spawn=None) -> list:
    """Submit the plan's runs in order (teachers to train, cold start, distillation); returns the runs."""
    name, runs = plan_["name"], []
    refs = {t: teacher_ref(store, n) for t, n in plan_["teachers"].items()}
    for task in plan_["train"]:  # check every name before submitting anything
        check_name(store, f"{name}-{task}")
    for task, cfg in plan_["train"].items():
        if cfg["kind"] == "sft" and Path(cfg["data"]) == world_set(store, task):
            ensure_image_set(cfg["data"], task, WORLD_SET_IMAGES)  # 512 renders: under a second
        request = TeacherRequest(f"{name}-{task}", task, cfg["kind"], {k: v for k, v in cfg.items() if k != "kind"})
        run = define_teacher(store, request, base, spawn=spawn)
        refs[task], runs = run.id, [*runs, run]
    init = None
    if plan_["coldstart"]:
        cfg = {k: v for k, v in plan_["coldstart"].items() if k != "kind"}
        run = queue.submit(store, "coldstart", {**cfg, "teachers": refs}, name=f"{name}-coldstart", spawn=spawn)
        init, runs = run.id, [*runs, run]
    cfg = {k: v for k, v in plan_["opd"].items() if k != "kind"}
    run = queue.submit(store, "opd", {**cfg, "teachers": refs, "init": init}, name=name, spawn=spawn)
    return [*runs, run]


def cli_commands(plan_: dict, home: str | None = None) -> str:
    """The equivalent commands: config files to write, then ``flowopd runs submit`` (or ``flowopd train``)."""
    h = f" --home {shlex.quote(str(home))}" if home else ""
    name, lines = plan_["name"], []
    for task, cfg in plan_["train"].items():
        if cfg["kind"] == "sft":
            lines += [f"# the image set of {name}-{task}: the world's renders of the task",
                      f"flowopd world dataset --task {task} --n {WORLD_SET_IMAGES} --out {shlex.quote(cfg['data'])}"]
        lines += [f"# teacher {name}-{task}: save its {cfg['kind']} config below as {name}-{task}.json",
                  f"flowopd runs{h} submit {cfg['kind']} --config {name}-{task}.json --name {name}-{task}"]
    if plan_["coldstart"]:
        lines += [f"# cold start: save the coldstart config as {name}-coldstart.json (teachers: run ids or folders)",
                  f"flowopd runs{h} submit coldstart --config {name}-coldstart.json --name {name}-coldstart"]
    lines += [f"# distillation: save the opd config as {name}.json, init = the cold start's run id",
              f"flowopd runs{h} submit opd --config {name}.json --name {name}",
              f"# or in the foreground: flowopd train opd --config {name}.json --out runs/{name}"]
    return "\n".join(lines)


def teacher_cli(request: TeacherRequest, home: str | None = None) -> str:
    h = f" --home {shlex.quote(str(home))}" if home else ""
    return (f"# save the config JSON below as {request.name}.json, then\n"
            f"flowopd runs{h} submit {request.algorithm} --config {request.name}.json --name {request.name}\n"
            f"# or in the foreground: flowopd train {request.algorithm} --config {request.name}.json "
            f"--out runs/{request.name}")


def configs_json(plan_: dict) -> str:
    """The plan's configs as one JSON document (each stage's config as a runs-submit file takes it)."""
    return json.dumps({"train": plan_["train"], "coldstart": plan_["coldstart"], "opd": plan_["opd"],
                       "teachers": plan_["teachers"], "name": plan_["name"]}, indent=1)
