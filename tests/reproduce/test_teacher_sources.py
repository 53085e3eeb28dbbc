"""Teachers of any source in the benchmark: the plan per task, the joint <source>-mix rows, and a smoke run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowopd.reproduce.config import ReproduceConfig
from flowopd.reproduce.plan import build_plan, long_mix_budget, rows
from flowopd.reproduce.runner import reproduce
from flowopd.world.splits import load_prompts

SOURCES = {"text": "sft", "prefer": "awm", "quality": "awm"}


def test_the_plan_takes_each_tasks_teacher_source_and_adds_the_joint_rows(tmp_path) -> None:
    cfg = ReproduceConfig.preset("default", teachers=SOURCES)
    plan = {s.name: s for s in build_plan(cfg, 0, tmp_path / "seed0")}
    assert [plan[f"teacher-{t}"].kind for t in ("compose", "text", "prefer", "quality")] == ["grpo", "sft", "awm",
                                                                                           "awm"]
    assert plan["teacher-text"].config.data == str(tmp_path / "data" / "text")
    joint = plan["awm-mix"].config
    assert joint.sft_data == {"text": str(tmp_path / "data" / "text")}
    assert joint.rewards == joint.prompt_tasks == {"compose": 1.0, "prefer": 1.0, "quality": 1.0}
    assert (joint.epochs, joint.batch_size) == (cfg.distill.epochs, cfg.distill.batch_size)  # the distillation's
    assert plan["awm-mix-long"].config.epochs == plan["grpo-mix-long"].config.epochs
    table = rows(list(plan.values()))
    assert table.index("awm-mix") == table.index("grpo-mix") + 1 and table[-1] == "awm-mix-long"


def test_an_sft_teacher_counts_by_its_forward_backward_passes_in_the_long_budget(tmp_path) -> None:
    cfg = ReproduceConfig.preset("default", teachers={"text": "sft"}, sft={"steps": 600, "batch_size": 32})
    teachers = [s for s in build_plan(cfg, 0, tmp_path) if s.name.startswith("teacher-")]
    # 3 GRPO teachers of 16 steps; 600 x 32 images at one level = 60 steps of 32 rollouts x 10 levels
    assert long_mix_budget(cfg, 0, teachers).optimizer_steps == 3 * 16 + 60 + cfg.distill.optimizer_steps


def test_only_grpo_teachers_keep_the_published_plan(tmp_path) -> None:
    names = [s.name for s in build_plan(ReproduceConfig.preset("default"), 0, tmp_path)]
    assert not [n for n in names if n.endswith("-mix") and n != "grpo-mix"]


@pytest.mark.parametrize("teachers, message", [({"text": "dpo"}, "teachers\\['text'\\]"),
                                                ({"lettering": "sft"}, "teachers\\['lettering'\\]"),
                                                ({"text": "nft", "prefer": "awm"}, "joint='auto' is ambiguous")])
def test_bad_teacher_sources_are_refused_naming_the_field(teachers, message) -> None:
    with pytest.raises(ValueError, match=message):
        ReproduceConfig.preset("smoke", teachers=teachers)


@pytest.mark.slow
def test_a_smoke_benchmark_with_sft_and_awm_teachers_reports_the_joint_rows(tmp_path, small_model_dir: Path) -> None:
    cfg = ReproduceConfig.preset("smoke", model=str(small_model_dir), teachers=SOURCES, seesaw=False,
                                 grpo_mix_long=False, sft_prior=3)  # as the strong preset, with prior preservation
    summary = reproduce(cfg, tmp_path)
    assert {"awm-mix", "awm-mix-long", "teacher-text"} <= set(summary["rows"])
    assert "grpo-mix-long" not in summary["rows"] and not (tmp_path / "seed0" / "seesaw-text").exists()
    train = json.loads((tmp_path / "seed0" / "teacher-text" / "train.json").read_text())
    assert train["kind"] == "sft" and train["optimizer_steps"] == 2
    assert (tmp_path / "data" / "text" / "metadata.jsonl").is_file()
    reg = (tmp_path / "data" / "reg-text" / "metadata.jsonl").read_text().splitlines()
    assert train["config"]["reg_data"] == str(tmp_path / "data" / "reg-text") and len(reg) == 3
    others = [{r["prompt"] for r in load_prompts(t, "train")} for t in ("compose", "prefer", "quality")]
    assert [json.loads(line)["text"] in others[i] for i, line in enumerate(reg)] == [True] * 3  # base samples of
    # the other tasks' prompts, in turn
    report = (tmp_path / "report.md").read_text()
    assert "SFT teacher: text" in report and "AWM-Mix joint (distillation compute)" in report
    assert "vs the same-compute mix baseline `awm-mix`" in report
    assert "`opd` vs `awm-mix-long`" in report and "`grpo-mix-long`" not in report
    assert "Not run in this benchmark (`seesaw` false)" in report and "Seesaw: `compose`" not in report


def test_a_folder_from_before_ema_warmup_continues_only_with_the_legacy_rule(tmp_path) -> None:
    from flowopd.reproduce.plan import build_plan
    from flowopd.reproduce.runner import check_folder
    from flowopd.reproduce.stage import config_of, stored_config

    old = ReproduceConfig.preset("default").to_dict()
    for name in ("ema_warmup", "teachers", "joint", "sft_images", "nft", "awm", "sft"):
        del old[name]  # config.json as written before these fields existed
    (tmp_path / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"fields \['ema_warmup'\] differ"):
        check_folder(ReproduceConfig.preset("default"), tmp_path)
    legacy = ReproduceConfig.preset("default", ema_warmup="legacy")
    check_folder(legacy, tmp_path)  # the way it ran: accepted
    teacher = next(s for s in build_plan(legacy, 0, tmp_path / "seed0") if s.name == "teacher-text")
    before = config_of(teacher)
    del before["ema_warmup"]  # a stage's train.json from before the field
    assert stored_config(teacher, before) == config_of(teacher)


def test_the_strong_preset_plans_the_benchmarks_strongest_teachers(tmp_path) -> None:
    cfg = ReproduceConfig.preset("strong")
    plan = {s.name: s for s in build_plan(cfg, 0, tmp_path / "seed0")}
    assert [plan[f"teacher-{t}"].kind for t in ("compose", "text", "prefer", "quality")] == ["nft", "sft", "awm",
                                                                                           "awm"]
    assert plan["teacher-text"].config.steps == 400 and not plan["teacher-prefer"].config.ema
    assert plan["teacher-prefer"].config.epochs * plan["teacher-prefer"].config.optimizer_steps_per_epoch == 48
    assert plan["awm-mix"].config.sft_data == {"text": str(tmp_path / "data" / "text")}
    assert not [name for name in plan if name.startswith("seesaw-") or name == "grpo-mix-long"]
    assert "awm-mix-long" in plan and "seesaw-compose" in {s.name for s in build_plan(  # a field, not a rule
        ReproduceConfig.preset("strong", seesaw=True), 0, tmp_path / "seed0")}
    assert ReproduceConfig.from_dict(cfg.to_dict()) == cfg  # a stored strong config reads back the same


def test_the_strong_preset_merges_at_its_weights_and_joint_long_drops_only_the_long_joint_row(tmp_path) -> None:
    plan = {s.name: s for s in build_plan(ReproduceConfig.preset("strong"), 0, tmp_path / "seed0")}
    assert plan["coldstart-merge"].config.merge_weights() == {"compose": 0.25, "text": 0.75, "prefer": 0.5,
                                                              "quality": 0.25}
    short = [s.name for s in build_plan(ReproduceConfig.preset("strong", joint_long=False), 0, tmp_path / "seed0")]
    assert set(plan) - set(short) == {"awm-mix-long"} and "awm-mix" in short
