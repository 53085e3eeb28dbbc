"""Distillation without Gradio: a plan's configs, the pipeline's chain of queued runs (teachers, cold start,
distillation; later runs name earlier run ids) and the pre-flight's numbers."""

from __future__ import annotations

import pytest


@pytest.fixture
def base():
    from flowopd_studio.services.base_models import BaseModel

    return BaseModel("tiny-base", None, "tiny")


def test_pipeline_queues_teachers_coldstart_and_opd_in_order(store, spawned, base, small_model, make_adapter,
                                                            tmp_path):
    from flowopd_studio.services import distill

    make_adapter(small_model, tmp_path / "text-teacher")
    store.add_base_model("tiny-base", "x", "tiny")
    store.add_teacher("mine", "text", "text", str(tmp_path / "text-teacher"), source="import")
    choice = distill.DistillChoice("stu", {"text": "mine"}, ("compose", "prefer"), mar_anchor="text",
                                   beta_mar=0.05, coldstart="merge", preset="quick", sources="grpo")
    plan = distill.plan(store, choice, base)
    assert list(plan["train"]) == ["compose", "prefer"] and plan["opd"]["epochs"] == 12
    assert plan["opd"]["prompt_tasks"] == {"compose": 1.0, "text": 1.0, "prefer": 1.0}
    assert (plan["opd"]["mar_anchor"], plan["opd"]["beta_mar"], plan["coldstart"]["mode"]) == ("text", 0.05, "merge")
    assert "flowopd runs submit opd --config stu.json --name stu" in distill.cli_commands(plan)
    runs = distill.start(store, plan, base)
    assert [(r.stage, r.name) for r in runs] == [("grpo", "stu-compose"), ("grpo", "stu-prefer"),
                                                 ("coldstart", "stu-coldstart"), ("opd", "stu")]
    assert spawned == [runs[0].id]  # one at a time: the rest wait in the queue, oldest first
    assert [r.status for r in store.list_runs()] == ["queued"] * 3 + ["running"]
    compose, prefer, cold, opd = runs
    adapter = lambda r: str(store.run_dir(r.id) / "adapter")  # noqa: E731
    assert cold.config["teachers"] == {"compose": adapter(compose), "text": str(tmp_path / "text-teacher"),
                                       "prefer": adapter(prefer)}
    assert opd.config["init"] == adapter(cold) and opd.config["teachers"] == cold.config["teachers"]
    assert store.teacher("stu-compose")["source_run"] == compose.id


def test_the_cold_start_weights_the_strongest_sources_unless_the_preset_weights_them(store, base, monkeypatch):
    from flowopd.config.presets import QUICK_FIELDS
    from flowopd_studio.services import distill

    four = ("compose", "text", "prefer", "quality")
    choice = distill.DistillChoice("stu", {}, four, preset="quick")
    cold = distill.plan(store, choice, base)["coldstart"]  # the four strongest sources: the measured weights
    assert cold["weights"] == {"compose": 0.25, "text": 0.75, "prefer": 0.5, "quality": 0.25}
    for other in (distill.DistillChoice("stu", {}, four[1:], preset="quick"),  # three tasks: not measured
                  distill.DistillChoice("stu", {}, four, preset="quick", sources="grpo")):
        cold = distill.plan(store, other, base)["coldstart"]
        assert (cold["weights"], cold["merge_weighting"]) == ({}, "equal")
    monkeypatch.setitem(QUICK_FIELDS, "coldstart", {**QUICK_FIELDS["coldstart"], "merge_weighting": "gain",
                                                    "gain_prompts": 8})
    cold = distill.plan(store, choice, base)["coldstart"]  # a preset's own weighting wins
    assert (cold["merge_weighting"], cold["gain_prompts"], cold["weights"]) == ("gain", 8, {})


def test_pipeline_trains_each_task_with_its_strongest_source(store, spawned, base):
    """The default: NFT compose, SFT text (on the world's renders, written when the plan starts), AWM prefer and
    quality, each on its own task's reward and prompts; on an SD3 base text goes to NFT on the OCR reward."""
    from flowopd.datasets import load_image_set
    from flowopd_studio.services import distill
    from flowopd_studio.services.base_models import BaseModel

    plan = distill.plan(store, distill.DistillChoice("stu", {}, ("compose", "text", "prefer", "quality")), base)
    kinds = {t: cfg["kind"] for t, cfg in plan["train"].items()}
    assert kinds == {"compose": "nft", "text": "sft", "prefer": "awm", "quality": "awm"}
    assert plan["train"]["prefer"]["rewards"] == {"prefer": 1.0} == plan["train"]["prefer"]["prompt_tasks"]
    data = distill.world_set(store, "text")
    assert plan["train"]["text"]["data"] == str(data) and not data.exists()
    cli = distill.cli_commands(plan)
    assert f"flowopd world dataset --task text --n 512 --out {data}" in cli and "submit sft --config stu-text" in cli
    runs = distill.start(store, plan, base)
    assert [(r.stage, r.name) for r in runs] == [("nft", "stu-compose"), ("sft", "stu-text"), ("awm", "stu-prefer"),
                                                 ("awm", "stu-quality"), ("coldstart", "stu-coldstart"),
                                                 ("opd", "stu")]
    assert len(load_image_set(data, 32).captions) == distill.WORLD_SET_IMAGES  # the set the sft run trains on
    assert store.teacher("stu-text")["algorithm"] == "sft"
    sd3 = distill.teacher_sources("strongest", ["text", "compose"], "sd3")
    assert sd3 == {"text": "nft", "compose": "nft"}
    sd3_cfg = distill.teacher_config(store, "nft", "text", "quick", BaseModel("sd", "x", "sd3"), 0)
    assert sd3_cfg["rewards"] == {"ocr": 1.0} and sd3_cfg["prompt_tasks"] == {"text": 1.0}
    with pytest.raises(ValueError, match="Teacher algorithm 'sft' is unknown: use one of strongest, grpo"):
        distill.teacher_sources("sft", ["text"], "tiny")


def test_plan_refuses_bad_choices_naming_the_field(store, base):
    from flowopd_studio.services import distill

    with pytest.raises(ValueError, match="Teachers: none chosen"):
        distill.plan(store, distill.DistillChoice("s", {}), base)
    with pytest.raises(ValueError, match="Teacher for text: 'ghost' does not exist"):
        distill.plan(store, distill.DistillChoice("s", {"text": "ghost"}), base)
    with pytest.raises(ValueError, match="MAR anchor 'prefer' has no teacher here"):
        distill.plan(store, distill.DistillChoice("s", {}, ("text",), mar_anchor="prefer"), base)
    with pytest.raises(ValueError, match="Distillation settings: group_size=3 is invalid"):
        distill.plan(store, distill.DistillChoice("s", {}, ("text",), settings={"group_size": 3}), base)


def test_preflight_uses_measured_speeds_else_the_fallback(store, base, spawned):
    from flowopd.config.presets import preset
    from flowopd_studio.services.preflight import FALLBACK_IMAGES_PER_S, RUN_OVERHEAD_S, estimate, peak_memory_gib
    from flowopd_studio.storage import queue

    cfg = preset("grpo", "quick").to_dict()
    est = estimate(store, [("grpo", cfg), ("coldstart", {"mode": "merge"})], base)
    teacher = RUN_OVERHEAD_S + 512 / FALLBACK_IMAGES_PER_S["grpo"]
    assert est.stages[0]["seconds"] == pytest.approx(teacher) and "fallback" in est.stages[0]["how"]
    assert est.total_s == pytest.approx(teacher + RUN_OVERHEAD_S) and est.memory_gib is None
    run = queue.submit(store, "grpo", {"epochs": 1}, name="measured")
    store.add_metrics(run.id, [(2, "images_per_s", 4.0, 0.0), (4, "images_per_s", 6.0, 0.0)])
    est = estimate(store, [("grpo", cfg)], base)
    assert est.stages[0]["seconds"] == pytest.approx(RUN_OVERHEAD_S + 512 / 5.0)
    assert "median of 1" in est.stages[0]["how"]
    # an SD3 base: every training stage's peak from the memory plan, as `flowopd plan memory` prints it
    from flowopd.memplan.cli import memory_plan

    stages = [(k, preset(k, "paper", **extra).to_dict()) for k, extra in
              (("grpo", {}), ("sft", {}), ("coldstart", {"mode": "merge", "teachers": {"text": "x"}}),
               ("opd", {"teachers": {"text": "a", "prefer": "b"}, "prompt_tasks": {"text": 1.0, "prefer": 1.0}}))
              ]
    sd3 = estimate(store, stages, base.__class__("sd", "x", "sd3"))
    assert sd3.total_s is None and [p["stage"] for p in sd3.memory_plans] == ["grpo", "sft", "opd"]  # merge: none
    grpo = memory_plan("sd3.5-medium", 512, "paper", ["grpo"], micro_batch="config")["stages"][0]
    assert (sd3.memory_plans[0]["peak_gib"], sd3.memory_plans[0]["micro_batch"]) == (grpo["peak_gib"],
                                                                                     grpo["micro_batch"])
    from flowopd_studio.services.preflight import base_family

    folder = store.home / "large" / "transformer"  # the family comes from the base folder's transformer config
    folder.mkdir(parents=True)
    folder.joinpath("config.json").write_text('{"num_layers": 38, "num_attention_heads": 38, "attention_head_dim": 64}')
    assert base_family(base.__class__("l", str(folder.parent), "sd3")).name == "sd3.5-large"
    assert base_family(base.__class__("hub", "stabilityai/x", "sd3")).name == "sd3.5-medium"  # unread: Medium
    text = sd3.text(gpu=False)
    assert "| grpo | " in text and f"{grpo['peak_gib']:.1f} GiB" in text and "512 px" in text
    small = peak_memory_gib(cfg, {"params": 3.5e6, "layers": 6, "width": 128, "heads": 4, "tokens": 141})
    assert small < 0.5  # the tiny model: megabytes of weights, a micro-batch of 8 small images
    assert "| **total** | **" in est.text(gpu=False)
