"""Teachers: define one (a queued training run plus its ``teachers`` row), evaluate one (an ``eval`` run on the
first test prompts of its task), list them with where they come from and their scores.

A teacher trained here has the path ``runs/<id>/adapter`` (written when its run finishes) and ``source`` run;
an imported one ``teachers/<name>`` and ``source`` import (:mod:`.lora_import`). Scores are the stored ones,
else the quick evaluation's ``eval/<task>``, else the training run's last ``reward/<task>`` (marked "train").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from flowopd.layout import ADAPTER_DIR
from flowopd.world.prompts import TASKS

from ..storage import queue
from ..storage.paths import RUNS_DIR
from .base_models import BaseModel, ensure_registered
from .preflight import check_run_size

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
EVAL_LIMIT = 8  # test prompts of the task in a quick evaluation: a few seconds on the tiny model


@dataclass(frozen=True)
class TeacherRequest:
    """What "Start teacher" submits: ``config`` is the algorithm's full config (a dict with ``kind``)."""

    name: str
    task: str
    algorithm: str
    config: dict

    @classmethod
    def from_json(cls, text: str) -> TeacherRequest:
        try:
            data = json.loads(text or "")
            return cls(str(data["name"]), str(data["task"]), str(data["algorithm"]), dict(data["config"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"Teacher request is not a JSON object with name, task, algorithm and config ({err}): "
                             "fill in the form and press Start teacher") from None

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "task": self.task, "algorithm": self.algorithm,
                           "config": self.config}, indent=1)


def check_name(store, name: str) -> str:
    """A new teacher's name, stripped; ``ValueError`` naming the field when invalid or taken."""
    name = (name or "").strip()
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"Teacher name {name!r} is invalid: use 1-64 letters, digits, - or _, starting with a "
                         "letter or digit (e.g. text-quick)")
    if store.teacher(name) is not None:
        raise ValueError(f"Teacher name {name!r} is taken: pick another name (the existing teacher is kept)")
    return name


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"Task {task!r} is unknown: pick one of {', '.join(TASKS)}")
    return task


def define_teacher(store, request: TeacherRequest, base: BaseModel, *, spawn=None):
    """Submit the teacher's training run (its algorithm's stage) and register it; returns the run."""
    from .config_forms import teacher_algorithms

    name, task = check_name(store, request.name), check_task(request.task)
    if request.algorithm not in teacher_algorithms():
        raise ValueError(f"Algorithm {request.algorithm!r} does not train a teacher: use one of "
                         f"{', '.join(teacher_algorithms())}")
    config = {k: v for k, v in request.config.items() if k != "kind"}
    config["model"] = base.ref
    from flowopd.config.base import config_class

    check_run_size(request.algorithm, config_class(request.algorithm).from_dict(config).to_dict(), base)
    run = queue.submit(store, request.algorithm, config, name=name, spawn=spawn)
    rewards = config.get("rewards") or {task: 1.0}
    store.add_teacher(name, task, "+".join(rewards), f"{RUNS_DIR}/{run.id}/{ADAPTER_DIR}",
                      base_model=ensure_registered(store, base), source_run=run.id, algorithm=request.algorithm,
                      config=run.config, source="run")
    return run


def quick_eval(store, name: str, model_ref: str | None, *, limit: int = EVAL_LIMIT, spawn=None):
    """Submit an ``eval`` run of teacher ``name`` on the first ``limit`` test prompts of its task; links it."""
    row = store.teacher(name)
    if row is None:
        raise ValueError(f"Teacher {name!r} does not exist: pick one from the teachers table")
    adapter = row["source_run"] if row["source"] == "run" and row["source_run"] else str(teacher_folder(store, row))
    config = {"model": model_ref, "adapter": adapter, "tasks": [row["task"]], "limit": limit}
    run = queue.submit(store, "eval", config, name=f"eval-{name}", spawn=spawn)
    store.update_teacher(name, eval_run=run.id)
    return run


def teacher_scores(store, row: dict) -> tuple[dict, str]:
    """(task -> score, what they are): stored scores, the eval run's, or the training run's last rewards."""
    if row.get("scores"):
        return json.loads(row["scores"]), "stored"
    for run_id, prefix, what in ((row.get("eval_run"), "eval/", "eval"), (row.get("source_run"), "reward/", "train")):
        if run_id:
            latest = store.latest_metrics(run_id)
            scores = {k[len(prefix):]: v for k, v in latest.items()
                      if k.startswith(prefix) and k[len(prefix):] in TASKS}
            if scores:
                return scores, what
    return {}, ""


def _status(store, run_id: str | None) -> str:
    if not run_id:
        return ""
    try:
        return store.get_run(run_id).status
    except ValueError:
        return "deleted"


def list_teachers(store) -> list[dict]:
    """Every teacher with its task, algorithm, source, run status, scores and base, by name."""
    out = []
    for row in store.teachers():
        scores, what = teacher_scores(store, row)
        status = _status(store, row.get("source_run")) if row.get("source") == "run" else "ready"
        out.append({"name": row["name"], "task": row["task"], "algorithm": row.get("algorithm") or "",
                    "guidance": teacher_guidance(store, row), "source": row.get("source") or "run", "status": status,
                    "score": round(scores[row["task"]], 4) if row["task"] in scores else None,
                    "scores": ", ".join(f"{k} {v:.3f}" for k, v in scores.items()) + (f" ({what})" if what else ""),
                    "eval": _status(store, row.get("eval_run")), "base": row.get("base_model") or "",
                    "run": row.get("source_run") or "", "path": row["path"]})
    return out


UNUSABLE = ("failed", "stopped", "interrupted", "deleted")  # a run that will not write its adapter as it is


def teachers_by_task(store) -> dict[str, list[str]]:
    """Task -> names of the teachers a distillation can use (every task present, maybe empty): a teacher whose run
    failed, was stopped, interrupted or deleted is left out (the teachers table still lists it, with its status,
    so that it can be resumed or removed)."""
    out: dict[str, list[str]] = {t: [] for t in TASKS}
    for row in store.teachers():
        if row.get("source") == "run" and _status(store, row.get("source_run")) in UNUSABLE:
            continue
        out.setdefault(row["task"], []).append(row["name"])
    return out


def teacher_ref(store, name: str) -> str:
    """What a cold-start or OPD config takes for teacher ``name``: its run id (a queued or running run is
    resolved when the next run is submitted) or its absolute adapter folder."""
    row = store.teacher(name)
    if row is None:
        raise ValueError(f"Teacher {name!r} does not exist: refresh the teacher lists")
    if row.get("source") == "run" and row.get("source_run"):
        status = _status(store, row["source_run"])
        if status in ("failed", "stopped", "interrupted", "deleted"):
            raise ValueError(f"Teacher {name!r}: its run {row['source_run']} is {status}: resume it in the Runs tab "
                             "or pick another teacher")
        return row["source_run"]
    return str(teacher_folder(store, row))


def teacher_guidance(store, row: dict) -> float | None:
    """The CFG scale a teacher is sampled at: its adapter's own (adapter.json), else its run's config's (a run
    still training), else None (an imported LoRA without one: evaluation and distillation use the default)."""
    from flowopd.adapters import AdapterError, read_adapter_metadata

    try:
        meta = read_adapter_metadata(teacher_folder(store, row))
        return float(meta["guidance"]) if isinstance(meta.get("guidance"), (int, float)) else None
    except (AdapterError, ValueError, OSError):  # not written yet: the run that trains it says
        pass
    if row.get("source_run"):
        try:
            value = store.get_run(row["source_run"]).config.get("guidance")
        except ValueError:
            return None
        return float(value) if isinstance(value, (int, float)) else None
    return None


def teacher_folder(store, row: dict):
    """The absolute adapter folder of a teachers row (stored relative to the data folder, or absolute)."""
    from pathlib import Path

    path = Path(row["path"])
    return path if path.is_absolute() else store.path(row["path"])
