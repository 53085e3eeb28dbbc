"""The Distill tab over HTTP (gradio_client): pre-flight (estimate, config JSON, CLI), the whole pipeline as a
chain of queued runs (no real worker: the queue's spawn is replaced), and a bad choice refused by name."""

from __future__ import annotations

import json

import pytest


def _form(name: str, team: dict, train: list, anchor: str = "base", **changes) -> list:
    from flowopd.world.prompts import TASKS
    from flowopd_studio.services.config_forms import DISTILL_OWN, preset_values
    from flowopd_studio.ui.config_form import form_order
    from flowopd_studio.ui.distill_tab import NONE

    sources = changes.pop("sources", "grpo")
    values = {**preset_values("opd", "quick", DISTILL_OWN), **changes}
    return [name, *(team.get(t, NONE) for t in TASKS), train, sources, "per-sample", "kl", anchor, 0.02, "merge",
            "quick", *(values[f] for f in form_order("opd", DISTILL_OWN))]


def test_preflight_then_the_whole_pipeline(app, spawned):
    from flowopd_studio.storage.store import Store

    client, home = app
    plan, cli, estimate = client.predict(*_form("stu", {}, ["text", "compose"], epochs=2, sources="strongest"),
                                         api_name="/distill_plan")
    data = json.loads(plan)
    assert list(data["train"]) == ["text", "compose"] and data["opd"]["epochs"] == 2
    assert [data["train"][t]["kind"] for t in ("text", "compose")] == ["sft", "nft"]  # each task's strongest
    assert "submit opd --config stu.json --name stu" in cli and "flowopd train opd" in cli
    assert "| **total** |" in estimate and "fallback" in estimate and "unknown" not in estimate
    assert "| text teacher (sft) |" in estimate and "| distillation (opd) |" in estimate
    status = client.predict(api_name="/start_pipeline")  # the plan the pre-flight kept in the session's state
    assert "Queued 4 run(s)" in status
    with Store(home) as store:
        runs = sorted(store.list_runs(), key=lambda r: r.created_at)
        assert [r.stage for r in runs] == ["sft", "nft", "coldstart", "opd"]
        assert runs[3].config["init"] == str(store.run_dir(runs[2].id) / "adapter")
        assert [t["name"] for t in store.teachers()] == ["stu-compose", "stu-text"]
    assert spawned == [runs[0].id]


def test_bad_choice_is_refused_by_name(app, spawned):
    from gradio_client.exceptions import AppError

    client, _ = app
    with pytest.raises(AppError, match="Teachers: none chosen"):
        client.predict(*_form("stu", {}, []), api_name="/distill_plan")
    with pytest.raises(AppError, match="MAR anchor 'quality' has no teacher here"):
        client.predict(*_form("stu", {}, ["text"], anchor="quality"), api_name="/distill_plan")
    with pytest.raises(AppError, match="No plan yet: press Pre-flight"):
        client.predict(api_name="/start_distill")
    assert spawned == []


def test_an_uploaded_prompt_set_fills_the_distillations_prompt_sets(app, spawned, tmp_path):
    import zipfile

    from gradio_client import handle_file

    archive = tmp_path / "prefer.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("set/train_metadata.jsonl", '{"prompt": "a red fox in snow"}\n')
        zf.writestr("set/test_metadata.jsonl", '{"prompt": "a lighthouse at dusk"}\n')
    client, home = app
    value, message = client.predict(handle_file(str(archive)), "mine", "prefer", "",
                                    api_name="/unpack_distill_prompt_set")
    folder = str(home / "uploads" / "prompt-sets" / "mine-1" / "set")
    assert json.loads(value) == {"prefer": folder} and "1 train and 1 test prompts" in message
    plan, _, _ = client.predict(*_form("stu", {}, ["prefer"], prompt_sets=value), api_name="/distill_plan")
    assert json.loads(plan)["opd"]["prompt_sets"] == {"prefer": folder}  # the student trains on them
