"""The benchmark's plan and config, without training: rows, compute matching, reuse, validation, CLI help."""

from __future__ import annotations

import pytest

from flowopd.reproduce.config import ReproduceConfig, StageBudget
from flowopd.reproduce.plan import ROWS, SEESAW, build_plan


def _by_name(cfg: ReproduceConfig, tmp_path) -> dict:
    return {spec.name: spec for spec in build_plan(cfg, 0, tmp_path)}


def test_default_plan_rows_compute_and_reuse(tmp_path) -> None:
    plan = _by_name(ReproduceConfig.preset("default"), tmp_path)
    assert set(ROWS) | set(SEESAW) | {"coldstart-sft"} == set(plan)
    compute = {name: spec.planned_compute() for name, spec in plan.items()}
    assert compute["grpo-mix"] == compute["opd"] == compute["opd-no-mar"] == compute["opd-sft"]
    pipeline = [compute[f"teacher-{t}"] for t in ("compose", "text", "prefer", "quality")]
    pipeline += [compute["coldstart-merge"], compute["opd"]]
    assert compute["grpo-mix-long"] == {"optimizer_steps": sum(c["optimizer_steps"] for c in pipeline),
                                        "images": sum(c["images"] for c in pipeline)}
    assert compute["coldstart-merge"] == {"optimizer_steps": 0, "images": 0}
    # Distillation serves four tasks, so it gets twice a teacher's steps (and GRPO-Mix the same).
    assert compute["opd"]["optimizer_steps"] == 2 * compute["teacher-text"]["optimizer_steps"] == 32
    # Equal configs run once: the first seesaw run is the compose teacher; the last one has a teacher's
    # budget, so it is not GRPO-Mix.
    assert {n: s.same_as for n, s in plan.items() if s.same_as} == {"seesaw-compose": "teacher-compose"}
    opd, no_mar, sft = plan["opd"].config, plan["opd-no-mar"].config, plan["opd-sft"].config
    assert (opd.beta_mar, no_mar.beta_mar, sft.beta_mar) == (0.02, 0.0, 0.02)
    assert opd.init.endswith("coldstart-merge/adapter") and sft.init.endswith("coldstart-sft/adapter")
    assert set(opd.teachers) == set(opd.prompt_tasks) == {"compose", "text", "prefer", "quality"}
    assert plan["seesaw-prefer"].config.rewards == {"compose": 1.0, "text": 1.0, "prefer": 1.0}
    assert not plan["coldstart-sft"].evaluate and plan["coldstart-merge"].evaluate
    # GRPO's lr is the teachers' tuned 1e-3; distillation from the merge init needs 10x less (docs/notes/opd-tuning.md).
    assert plan["teacher-text"].config.lr == plan["grpo-mix"].config.lr == 1e-3
    assert opd.lr == no_mar.lr == sft.lr == 1e-4
    assert list(plan)[-1] == "grpo-mix-long"  # the longest stage last: a cut-short run keeps the most rows


def test_other_budgets_keep_the_matching(tmp_path) -> None:
    cfg = ReproduceConfig.preset("default", teacher=StageBudget(6), distill={"epochs": 10}, seeds=3,
                                 rl={"lr": 1e-4}, coldstart={"sft_steps": 10})
    plan = _by_name(cfg, tmp_path)
    assert plan["seesaw-quality"].same_as is None  # teacher and distill budgets now differ
    assert plan["grpo-mix-long"].config.epochs == 4 * 6 + 10
    assert plan["teacher-text"].config.lr == plan["opd"].config.lr == 1e-4
    assert cfg.coldstart["sft_samples_per_task"] == 64  # dict overrides merge with the preset's
    assert ReproduceConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(("fields", "message"), [
    ({"budget": "huge"}, "budget 'huge' is unknown"),
    ({"seeds": 0}, "seeds=0 is invalid"),
    ({"rl": {"epochs": 3}}, r"rl sets \['epochs'\]"),
    ({"opd": {"beta_mar": 0.1}}, r"opd sets \['beta_mar'\]"),
    ({"teacher": {"epochs": 0}}, "teacher: epochs=0 is invalid: use a positive integer"),
    ({"eval_limit": 0}, "eval_limit=0 is invalid"),
    ({"colour": 1}, "unknown reproduce config keys"),
])
def test_bad_config_names_the_field(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReproduceConfig.from_dict(fields)


def test_bad_stage_override_fails_before_anything_runs(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown grpo config keys"):
        build_plan(ReproduceConfig.preset("smoke", grpo={"no_such_field": 1}), 0, tmp_path)


def test_help_shows_an_example(cli) -> None:
    code, out, _ = cli("reproduce", "--help")
    assert code == 0 and "usage: flowopd reproduce" in out
    assert "example: flowopd reproduce --out" in out and "--budget" in out and "--seeds" in out


def test_bad_budget_is_a_usage_error(cli, tmp_path) -> None:
    code, _, err = cli("reproduce", "--out", tmp_path, "--seeds", "0", "--budget", "smoke")
    assert code == 2 and "flowopd: error: seeds=0 is invalid" in err


def test_a_stage_stored_before_a_config_field_existed_still_matches_at_its_default(tmp_path) -> None:
    from flowopd.reproduce.stage import _check_config, config_of

    spec = _by_name(ReproduceConfig.preset("smoke"), tmp_path)["teacher-text"]
    old = {k: v for k, v in config_of(spec).items() if k != "steps_per_microbatch"}  # written by older code
    _check_config(spec, {"config": old}, tmp_path / "result.json")  # the new field is at its default: the same
    changed = _by_name(ReproduceConfig.preset("smoke", rl={"steps_per_microbatch": 1}), tmp_path)["teacher-text"]
    with pytest.raises(ValueError, match=r"fields \['steps_per_microbatch'\] differ"):
        _check_config(changed, {"config": old}, tmp_path / "result.json")
    with pytest.raises(ValueError, match=r"fields \['lr'\] differ"):
        _check_config(spec, {"config": {**old, "lr": 0.5}}, tmp_path / "result.json")
