"""The built-in examples: the manifest loads, every adapter applies to the model, the build script copies a
reproduce seed folder's finished stages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flowopd_studio.services.examples import EXAMPLES_DIR, ExampleError, load_examples
from flowopd_studio.services.sources import list_sources

ROOT = Path(__file__).resolve().parents[2]


def _applies(model, examples) -> None:
    from flowopd.adapters import drop_adapter, load_adapter

    for e in examples:
        load_adapter(model, e.adapter, "example_check")  # refuses another base or other shapes
        drop_adapter(model, "example_check")


def test_the_shipped_manifest_loads_and_applies_to_the_built_in_model():
    """The package's examples (empty until benchmarks/build_examples.py has run) fit the built-in model."""
    examples = load_examples()
    if examples:
        from flowopd.models import load_model

        _applies(load_model(None), examples)
        assert {e.kind for e in examples} <= {"teacher", "coldstart", "student"}


def test_a_manifest_of_small_model_adapters_loads_and_applies(examples_dir, small_model):
    examples = load_examples(examples_dir)
    assert [e.kind for e in examples] == ["teacher"] * 4 + ["coldstart", "student"]
    assert [e.task for e in examples][:4] == ["compose", "text", "prefer", "quality"]
    _applies(small_model, examples)
    found = list_sources(None, "small", small_model.model_id, examples=examples_dir)
    assert [s.kind for s in found] == ["base"] + ["teacher"] * 4 + ["coldstart", "student"]
    assert all(s.origin.startswith("built-in example: test fixture") for s in found[1:])
    assert list_sources(None, "other", "SomeOtherModel:0", examples=examples_dir)[1:] == []  # other base


def test_a_bad_manifest_is_refused(examples_dir, tmp_path):
    folder = tmp_path / "ex"
    shutil.copytree(examples_dir, folder)
    entries = json.loads((folder / "examples.json").read_text())
    for bad, match in [({"adapter": "../../etc"}, "leaves"), ({"kind": "painter"}, "kind"),
                       ({"adapter": "nothing-here"}, "not an adapter folder")]:
        (folder / "examples.json").write_text(json.dumps([{**entries[0], **bad}]))
        with pytest.raises(ExampleError, match=match):
            load_examples(folder)
    assert load_examples(tmp_path / "empty") == []


def test_build_examples_copies_finished_stages(examples_dir, tmp_path, small_model):
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_examples", ROOT / "benchmarks" / "build_examples.py")
    build_examples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_examples)
    seed_dir = tmp_path / "run" / "seed0"
    seed_dir.mkdir(parents=True)
    (tmp_path / "run" / "variant.json").write_text(json.dumps({"budget": "default"}))
    for stage in ("teacher-text", "opd", "teacher-prefer"):
        (seed_dir / stage).mkdir(parents=True)
        shutil.copytree(examples_dir / stage, seed_dir / stage / "adapter")
        (seed_dir / stage / "checkpoint").mkdir()
        (seed_dir / stage / "checkpoint" / "state.pt").write_text("not copied")
    for stage in ("teacher-text", "opd"):  # teacher-prefer is still training: no result.json
        (seed_dir / stage / "result.json").write_text(json.dumps({"metrics": {"text": 0.77, "average": 0.6},
                                                                  "config": {"lr": 0.001}}))
    dest = tmp_path / "dest"
    dest.mkdir()
    built = build_examples.build(seed_dir, dest, commit="abc1234")
    assert [e.name for e in built] == ["teacher-text", "opd"]
    loaded = load_examples(dest)
    assert [(e.kind, e.task) for e in loaded] == [("teacher", "text"), ("student", None)]
    assert loaded[0].source == "reproduce default budget, seed 0, stage teacher-text (flowopd commit abc1234)"
    assert loaded[0].metrics == {"text": 0.77, "average": 0.6} and loaded[0].config == {"lr": 0.001}
    assert sorted(p.name for p in (dest / "opd").iterdir()) == ["adapter.json", "pytorch_lora_weights.safetensors"]
    _applies(small_model, loaded)
    with pytest.raises(SystemExit, match="teacher-prefer"):
        build_examples.build(seed_dir, dest, require_all=True)


def test_examples_are_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'flowopd_studio = ["examples/**"]' in text
    assert (EXAMPLES_DIR / "examples.json").is_file()


def test_the_built_in_teachers_become_teachers_of_the_store_once(tmp_path) -> None:
    """On a first launch Distill offers the shipped teachers: source builtin, scored, usable as a config's
    teacher folder; a second launch adds nothing."""
    from flowopd_studio.storage.store import Store

    store = Store(tmp_path / "home")
    from flowopd_studio.services.examples import load_examples, register_builtin_teachers
    from flowopd_studio.services.teachers import teacher_ref, teachers_by_task

    examples = load_examples()
    added = register_builtin_teachers(store, examples)
    assert sorted(added) == sorted(f"example-{e.name}" for e in examples if e.kind == "teacher")
    assert register_builtin_teachers(store, examples) == []
    by_task = teachers_by_task(store)
    assert all(f"example-teacher-{task}" in by_task[task] for task in ("compose", "text", "prefer", "quality"))
    row = store.teacher("example-teacher-text")
    text = next(e for e in examples if e.name == "teacher-text")
    assert row["source"] == "builtin" and row["algorithm"] == text.config["kind"] and '"text"' in row["scores"]
    assert (Path(teacher_ref(store, "example-teacher-text")) / "adapter.json").is_file()
