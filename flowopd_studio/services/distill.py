"""Distillation: plan (configs, CLI, pre-flight), start a cold start + OPD run, or the whole pipeline.

A plan is a JSON-safe dict: ``{"name", "teachers": {task: teacher name}, "train": {task: grpo config},
"coldstart": config | None, "opd": config}``. Starting it submits, in this order, a ``grpo`` run per task of
``train`` (each registered as a teacher), a ``coldstart`` run (unless its mode is ``none``) and the ``opd``
run, whose ``teachers`` and ``init`` name the earlier runs' ids; ``freeze`` resolves them to their
``adapter/`` folders, which exist by the time the run starts because the queue starts queued runs oldest
first, one at a time (setting ``max_concurrent`` = 1, the default).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from flowopd.config.choices import COLDSTART_MODES
from flowopd.config.presets import preset
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
        base_cfg = preset("opd", choice.preset, teachers={t: "-" for t in tasks}).to_dict()
        settings = {k: v for k, v in base_cfg.items() if k not in fixed and k != "kind"}
    opd = build_config("opd", settings, fixed, "Distillation settings")
    check_run_size("opd", opd, base)
    coldstart = None
    if choice.coldstart != "none":
        extra = {k: v for k, v in preset("coldstart", choice.preset, teachers=refs).to_dict().items()
                 if k.startswith("sft_") or k in ("lora_rank", "lora_alpha")}
        coldstart = build_config("coldstart", extra, {"mode": choice.coldstart, "teachers": refs,
                                                      "model": base.ref, "seed": opd["seed"]}, "Cold start")
    train_cfgs = {t: preset("grpo", choice.preset, model=base.ref, rewards={t: 1.0}, prompt_tasks={t: 1.0},
                            seed=opd["seed"]).to_dict() for t in train}
    return {"name": name, "teachers": {t: teachers[t] for t in tasks if t in teachers and t not in train},
            "train": train_cfgs, "coldstart": coldstart, "opd": opd}


def plan_estimate(store, plan_: dict, base: BaseModel, arch: dict | None = None) -> Estimate:
    stages = [("grpo", cfg) for cfg in plan_["train"].values()]
    if plan_["coldstart"]:
        stages.append(("coldstart", plan_["coldstart"]))
    stages.append(("opd", plan_["opd"]))
    return estimate(store, stages, base, arch)


def start(store, plan_: dict, base: BaseModel, *, spawn=None) -> list:
    """Submit the plan's runs in order (teachers to train, cold start, distillation); returns the runs."""
    name, runs = plan_["name"], []
    refs = {t: teacher_ref(store, n) for t, n in plan_["teachers"].items()}
    for task in plan_["train"]:  # check every name before submitting anything
        check_name(store, f"{name}-{task}")
    for task, cfg in plan_["train"].items():
        run = define_teacher(store, TeacherRequest(f"{name}-{task}", task, "grpo", cfg), base, spawn=spawn)
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
    for task in plan_["train"]:
        lines += [f"# teacher {name}-{task}: save the grpo config below as {name}-{task}.json",
                  f"flowopd runs{h} submit grpo --config {name}-{task}.json --name {name}-{task}"]
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
