"""What Compare and Export can pick: the base, the built-in examples, finished runs' adapters and the
teachers of the store, each with a key (the dropdown's value), a label and where it comes from.

Keys: ``base``, ``example:<name>``, ``run:<run id>`` (the run's latest adapter artifact) and
``teacher:<name>`` (the store's teachers table).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from flowopd.adapters import AdapterError, read_adapter_metadata
from flowopd.layout import ADAPTER_WEIGHTS_FILE

from ..storage.errors import StoreError
from . import examples as builtin
from .examples import load_examples

BASE = "base"
# A run's stage -> the kind of adapter it trains.
STAGE_KINDS = {"grpo": "teacher", "coldstart": "coldstart", "opd": "student"}
KIND_ORDER = {"base": 0, "teacher": 1, "coldstart": 2, "student": 3}


@dataclass(frozen=True)
class Source:
    """One model to compare or export: the base (``folder`` None) or an adapter folder on top of it."""

    key: str
    label: str  # the column header
    kind: str  # base | teacher | coldstart | student
    origin: str  # where it comes from, shown under the header
    folder: Path | None = None
    task: str | None = None
    metrics: dict = field(default_factory=dict)  # known evaluation (task -> score), e.g. the reproduction's
    config: dict = field(default_factory=dict)  # the training config when known (a run's)


def base_source(model_name: str) -> Source:
    return Source(BASE, "base", "base", f"the base model ({model_name}), no adapter")


def example_sources(folder: Path | None = None) -> list[Source]:
    """The built-in examples (``folder``: another examples folder, as in tests)."""
    return [Source(f"example:{e.name}", e.name, e.kind, f"built-in example: {e.source}", e.adapter, e.task,
                   dict(e.metrics), dict(e.config)) for e in load_examples(folder or builtin.EXAMPLES_DIR)]


def _run_kind(run) -> tuple[str, str | None]:
    kind = STAGE_KINDS.get(run.stage, "student")
    rewards = run.config.get("rewards") if isinstance(run.config, dict) else None
    task = next(iter(rewards)) if kind == "teacher" and isinstance(rewards, dict) and len(rewards) == 1 else None
    return kind, task


def run_sources(store) -> list[Source]:
    """Finished runs with an adapter artifact (the latest one of each run)."""
    out = []
    for run in store.list_runs("finished"):
        adapters = [a for a in store.artifacts(run.id) if a["kind"] == "adapter"]
        if not adapters:
            continue
        latest = max(adapters, key=lambda a: (a["step"] or 0, a["created_at"]))
        try:
            folder = store.path(latest["path"])
        except StoreError:
            continue
        kind, task = _run_kind(run)
        out.append(Source(f"run:{run.id}", f"{run.name}", kind, f"run {run.id} ({run.stage}, finished)", folder,
                          task, config=dict(run.config)))
    return out


def teacher_sources(store) -> list[Source]:
    out = []
    for row in store.teachers():
        path = Path(row["path"])
        try:
            folder = path if path.is_absolute() else store.path(row["path"])
        except StoreError:
            continue
        origin = f"teacher in the store ({row['reward']} reward" + (f", run {row['source_run']})"
                                                                     if row.get("source_run") else ", imported)")
        out.append(Source(f"teacher:{row['name']}", row["name"], "teacher", origin, folder, row["task"]))
    return out


def compatible(source: Source, model_id: str) -> bool:
    """Whether ``source`` can load onto the model of ``model_id`` (the base always can)."""
    if source.folder is None:
        return True
    try:
        return read_adapter_metadata(source.folder).get("base_model") == model_id
    except AdapterError:
        return False


def list_sources(store, model_name: str, model_id: str | None = None, examples: Path | None = None) -> list[Source]:
    """Every pickable source, base first, then teachers, cold starts and students; ``model_id`` given:
    only adapters trained on that base model."""
    found = [base_source(model_name), *example_sources(examples)]
    if store is not None:
        found += run_sources(store) + teacher_sources(store)
    if model_id is not None:
        found = [s for s in found if compatible(s, model_id)]
    return sorted(unique(found), key=lambda s: KIND_ORDER.get(s.kind, 9))


def unique(sources: list[Source]) -> list[Source]:
    """``sources`` without repeats of one adapter: a trained teacher is also its run, an imported built-in
    example also the example; the first of each (examples, then runs, then teachers) stays. Two sources are
    one adapter when their weights are the same bytes."""
    seen, out = set(), []
    for source in sources:
        key = _weights_digest(source.folder) if source.folder is not None else source.key
        if key not in seen:
            seen.add(key)
            out.append(source)
    return out


def _weights_digest(folder: Path) -> str:
    weights = Path(folder) / ADAPTER_WEIGHTS_FILE
    try:
        stat = weights.stat()
    except OSError:
        return str(Path(folder).resolve())  # not written yet (a run still training): its folder stands for it
    return _digest(str(weights), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=512)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resolve(key: str, sources: list[Source]) -> Source:
    """The source of ``key`` among ``sources``; a ValueError naming the known keys otherwise."""
    for s in sources:
        if s.key == key:
            return s
    raise ValueError(f"unknown model {key!r}: pick one of {', '.join(s.key for s in sources)}")
