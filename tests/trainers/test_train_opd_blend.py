"""OPD with blended routing on the small random model: mixed prompts get a blend of their tasks' teachers,
single-task prompts train exactly as with per-sample routing."""

from __future__ import annotations

import torch

from flowopd.adapters import adapter_parameters
from flowopd.methods.opd.trainer import train_opd


def _student(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in adapter_parameters(model, "student").items()}


def test_blend_trains_on_mixed_prompts(tiny, make_teachers, opd_config, tmp_path, monkeypatch):
    import flowopd.methods.opd.trainer as trainer

    calls = []
    real = trainer.routed_velocity
    monkeypatch.setattr(trainer, "routed_velocity", lambda model, routes, *a, **k: calls.append(list(routes))
                        or real(model, routes, *a, **k))
    model = tiny()
    teachers = make_teachers(model, {"compose": 1, "text": 2})
    cfg = opd_config(teachers, routing="blend", prompt_tasks={"mixed": 1.0, "compose": 1.0}, epochs=2, lr=1e-2,
                     log_rewards=True, group_size=2)
    seen = []
    train_opd(model, cfg, tmp_path / "a", callback=seen.append)
    after = _student(model)  # a fresh student's lora_B is zero (it starts as the base)
    assert any(bool(p.abs().sum() > 0) for n, p in after.items() if "lora_B" in n)
    routes = [r for c in calls for r in c]
    assert {"teacher_compose": 0.5, "teacher_text": 0.5} in routes and {"teacher_compose": 1.0} in routes
    assert {"kl/teacher/mixed", "reward/compose", "reward/text"} <= set(seen[-1])
    assert all(v == v for v in seen[-1].values() if isinstance(v, float))  # no NaN


def test_blend_equals_per_sample_on_single_task_prompts(tiny, make_teachers, opd_config, tmp_path):
    students = {}
    for routing in ("per-sample", "blend"):
        model = tiny()
        teachers = make_teachers(model, {"compose": 1, "prefer": 2})
        train_opd(model, opd_config(teachers, routing=routing, lr=1e-2), tmp_path / routing)
        students[routing] = _student(model)
    assert all(torch.equal(students["blend"][n], p) for n, p in students["per-sample"].items())
