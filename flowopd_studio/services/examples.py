"""The built-in examples: small adapters of one seed of the committed reproduction, shipped with the package
so that a first launch has teachers, a cold start and a student to compare.

``flowopd_studio/examples/examples.json`` lists them (``benchmarks/build_examples.py`` writes it)::

    [{"name": "teacher-text", "kind": "teacher", "task": "text", "adapter": "teacher-text",
      "source": "reproduce default budget, seed 0, stage teacher-text (flowopd commit 1a2b3c4)",
      "metrics": {"compose": 0.37, "text": 0.75, "prefer": 0.59, "quality": 0.69, "average": 0.60}}, ...]

``adapter`` is a folder relative to the manifest (``adapter.json`` and the weights of
:func:`flowopd.adapters.save_adapter`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowopd.adapters import AdapterError, read_adapter_metadata

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
MANIFEST = "examples.json"
KINDS = ("teacher", "coldstart", "student")


class ExampleError(ValueError):
    """The examples manifest is malformed or names a missing adapter."""


@dataclass(frozen=True)
class Example:
    name: str
    kind: str  # teacher | coldstart | student
    task: str | None  # the teacher's task; None for the merge and the student
    adapter: Path  # absolute folder
    source: str  # where it comes from, shown under its column
    metrics: dict = field(default_factory=dict)  # the reproduction's evaluation of it (task -> score, average)
    config: dict = field(default_factory=dict)  # the stage's training config, for the model card

    def to_json(self, root: Path) -> dict:
        data = asdict(self)
        data["adapter"] = self.adapter.relative_to(root).as_posix()
        return data


def load_examples(folder: str | Path = EXAMPLES_DIR) -> list[Example]:
    """The examples of ``folder``'s manifest, in manifest order; [] when there is no manifest.

    Raises:
        ExampleError: a malformed entry, an unknown kind, or an adapter folder outside ``folder`` or missing.
    """
    root = Path(folder).resolve()
    path = root / MANIFEST
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ExampleError(f"{path} is not JSON ({err}): run benchmarks/build_examples.py again") from None
    if not isinstance(entries, list):
        raise ExampleError(f"{path} must hold a list of examples")
    out, names = [], set()
    for i, entry in enumerate(entries):
        missing = {"name", "kind", "adapter", "source"} - set(entry)
        if missing:
            raise ExampleError(f"{path}: entry {i} lacks {sorted(missing)}")
        if entry["kind"] not in KINDS:
            raise ExampleError(f"{path}: {entry['name']} has kind {entry['kind']!r}; use one of {KINDS}")
        if entry["name"] in names:
            raise ExampleError(f"{path}: the name {entry['name']!r} appears twice")
        adapter = (root / entry["adapter"]).resolve()
        if not adapter.is_relative_to(root):
            raise ExampleError(f"{path}: {entry['name']}'s adapter {entry['adapter']!r} leaves {root}")
        try:
            read_adapter_metadata(adapter)
        except AdapterError as err:
            raise ExampleError(f"{path}: {entry['name']}: {err}") from None
        names.add(entry["name"])
        out.append(Example(entry["name"], entry["kind"], entry.get("task"), adapter, entry["source"],
                           dict(entry.get("metrics") or {}), dict(entry.get("config") or {})))
    return out


def write_manifest(examples: list[Example], folder: str | Path = EXAMPLES_DIR) -> Path:
    """Write ``folder/examples.json`` for ``examples`` (whose adapters lie inside ``folder``)."""
    root = Path(folder).resolve()
    path = root / MANIFEST
    path.write_text(json.dumps([e.to_json(root) for e in examples], indent=1) + "\n")
    return path


def register_builtin_teachers(store, examples: list[Example] | None = None) -> list[str]:
    """The built-in example teachers as teachers of the store (source ``builtin``, scored by the reproduction's
    evaluation), so that Distill can use them on a first launch; returns the names added (``example-<name>``).
    Call it only when the app serves the built-in model, which they were trained on. Existing rows stay."""
    from .base_models import BUILTIN, ensure_registered, validate_base

    base = ensure_registered(store, validate_base(BUILTIN, None))
    added = []
    for example in examples if examples is not None else load_examples():
        name = f"example-{example.name}"
        if example.kind != "teacher" or not example.task or store.teacher(name) is not None:
            continue
        store.add_teacher(name, example.task, example.task, str(example.adapter), base_model=base,
                          algorithm=example.config.get("kind", "grpo"), config=example.config or None,
                          source="builtin")
        store.update_teacher(name, scores={k: v for k, v in example.metrics.items() if k != "average"})
        added.append(name)
    return added
