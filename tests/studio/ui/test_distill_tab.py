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

    values = {**preset_values("opd", "quick", DISTILL_OWN), **changes}
    return [name, *(team.get(t, NONE) for t in TASKS), train, "per-sample", "kl", anchor, 0.02, "merge", "quick",
            *(values[f] for f in form_order("opd", DISTILL_OWN))]


def test_preflight_then_the_whole_pipeline(app, spawned):
    from flowopd_studio.storage.store import Store

    client, home = app
    plan, cli, estimate = client.predict(*_form("stu", {}, ["text", "compose"], epochs=2), api_name="/distill_plan")
    data = json.loads(plan)
    assert list(data["train"]) == ["text", "compose"] and data["opd"]["epochs"] == 2
    assert "submit opd --config stu.json --name stu" in cli and "flowopd train opd" in cli
    assert "| **total** |" in estimate and "fallback" in estimate
    status = client.predict(api_name="/start_pipeline")  # the plan the pre-flight kept in the session's state
    assert "Queued 4 run(s)" in status
    with Store(home) as store:
        runs = sorted(store.list_runs(), key=lambda r: r.created_at)
        assert [r.stage for r in runs] == ["grpo", "grpo", "coldstart", "opd"]
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
