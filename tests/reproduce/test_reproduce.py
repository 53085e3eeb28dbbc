"""The smoke budget end to end on the small random model: outputs, schema, skipping finished stages, and
a stopped benchmark that continues to the same results as a straight one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowopd.events import Progress, TrainingCallback
from flowopd.reproduce.config import ReproduceConfig
from flowopd.reproduce.plan import ROWS
from flowopd.reproduce.results import machine, machines
from flowopd.reproduce.runner import reproduce
from flowopd.reproduce.stage import ReproduceStopped

METRICS = {"compose", "text", "prefer", "quality", "average"}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory, small_model_dir: Path) -> tuple[Path, Path]:
    """``flowopd reproduce --budget smoke --seeds 2`` on the small model, run once for this module."""
    from flowopd_studio.cli import main

    out = tmp_path_factory.mktemp("reproduce")
    assert main(["reproduce", "--out", str(out), "--budget", "smoke", "--seeds", "2",
                 "--model", str(small_model_dir)]) == 0
    return out, small_model_dir


def test_results_json_has_the_rows_and_schema(smoke_run) -> None:
    out, _ = smoke_run
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"rows", "compute", "wall_time_s", "seeds", "machine", "per_seed", "retention"}
    assert set(results["per_seed"]) == set(results["rows"]) and all(len(v) == 2 for v in results["per_seed"].values())
    assert set(results["retention"]) == {"compose", "text", "prefer", "quality"}
    assert all(len(r["per_seed"]) == 2 and isinstance(r["judged"], bool) for r in results["retention"].values())
    assert list(results["rows"]) == list(ROWS) and list(results["compute"]) == list(ROWS)
    for name, row in results["rows"].items():
        assert set(row) == METRICS | {"std"}, name
        assert set(row["std"]) == METRICS and all(v >= 0 for v in row["std"].values())
        assert all(0 <= row[m] <= 1 for m in METRICS)
        assert row["average"] == pytest.approx(sum(row[m] for m in METRICS - {"average"}) / 4)
    compute = results["compute"]
    assert all(set(c) == {"optimizer_steps", "images"} for c in compute.values())
    assert compute["base"] == compute["coldstart-merge"] == {"optimizer_steps": 0, "images": 0}
    assert compute["grpo-mix"] == compute["opd"] == {"optimizer_steps": 1, "images": 4}  # the smoke budget
    teachers = [compute[f"teacher-{t}"] for t in ("compose", "text", "prefer", "quality")]
    assert compute["grpo-mix-long"]["optimizer_steps"] == sum(t["optimizer_steps"] for t in teachers) + 1
    wall = results["wall_time_s"]
    assert wall["total"] == pytest.approx(sum(v for k, v in wall.items() if k != "total"))
    assert {"base", "teacher-text", "coldstart-sft", "opd", "grpo-mix-long", "seesaw-text"} <= set(wall)
    assert results["seeds"] == 2 and "cores" in results["machine"]


def test_results_name_the_machine_the_stages_ran_on(smoke_run) -> None:
    out, _ = smoke_run
    stage_machines = {json.loads(p.read_text())["machine"] for p in out.glob("seed*/*/result.json")}
    assert stage_machines == {machine()}  # this process ran every stage
    assert json.loads((out / "results.json").read_text())["machine"] == machine()
    assert f"Stages ran on: {machine()}." in (out / "report.md").read_text()


def test_machines_lists_each_distinct_machine_once_and_falls_back_to_this_one() -> None:
    results = {0: {"base": {"machine": "A, 1 threads"}, "opd": {"machine": "B, 8 threads"}},
               1: {"base": {"machine": "A, 1 threads"}, "opd": {}}}
    assert machines(results) == "A, 1 threads; B, 8 threads"
    assert machines({0: {"base": {}}}) == machine()  # records written before stages kept the field


def test_report_tables_and_plots(smoke_run) -> None:
    out, _ = smoke_run
    report = (out / "report.md").read_text()
    for heading in ("## Main table", "## Seesaw", "## MAR ablation", "## The paper's claims", "## Wall time"):
        assert heading in report
    for row in ROWS:
        assert f"(`{row}`)" in report
    assert "+quality (`seesaw-quality`)" in report and "± " in report
    pngs = sorted((out / "plots").glob("*.png"))
    assert {p.stem for p in pngs} >= {"teacher-compose", "grpo-mix", "opd", "opd-no-mar", "grpo-mix-long",
                                      "coldstart-sft"}
    assert all(p.read_bytes().startswith(PNG) for p in pngs)
    assert all(f"](plots/{p.name})" in report for p in pngs)
    assert (out / "seed1" / "opd" / "adapter" / "adapter.json").is_file()
    assert (out / "seed1" / "opd" / "curve.jsonl").read_text().count("\n") == 1  # one epoch


class Events(TrainingCallback):
    """What a reproduce run reports (flowopd.events); ``stop_when(self)`` answers ``should_stop``."""

    def __init__(self, stop_when=None):
        self.progress: list[Progress] = []
        self.metrics: list[tuple[int, dict]] = []
        self.stop_when = stop_when

    def on_progress(self, progress: Progress) -> None:
        self.progress.append(progress)

    def on_metrics(self, step: int, metrics) -> None:
        self.metrics.append((step, dict(metrics)))

    def should_stop(self) -> bool:
        return bool(self.stop_when and self.stop_when(self))

    def statuses(self) -> list[str]:
        """How each benchmark stage ended: done or skipped."""
        return [p.message.rsplit(" ", 1)[-1] for p in self.progress
                if p.stage == "reproduce" and p.message.endswith((" done", " skipped"))]

    def trainer_starts(self, stage: str) -> list[int]:
        """The steps a stage's trainer began at (a replayed curve begins no trainer)."""
        return [p.step for p in self.progress if p.stage == stage and p.message == "starting"]

    def series(self, name: str) -> list[float]:
        return [m[name] for _, m in self.metrics if name in m]


def test_rerun_skips_finished_stages_and_replays_their_curves(smoke_run) -> None:
    out, model = smoke_run
    before = json.loads((out / "results.json").read_text())
    events = Events()
    after = reproduce(ReproduceConfig.preset("smoke", seeds=2, model=str(model)), out, callback=events)
    assert events.statuses() and set(events.statuses()) == {"skipped"}
    assert not [p for p in events.progress if p.message == "starting" and p.stage != "reproduce"]
    assert events.series("seed1/opd/epoch") == [1]  # the stored curve, replayed
    assert after["rows"] == before["rows"] and after["wall_time_s"] == before["wall_time_s"]


def test_another_budget_in_the_same_folder_is_refused(smoke_run) -> None:
    out, model = smoke_run
    cfg = ReproduceConfig.preset("smoke", seeds=2, model=str(model), rl={"lr": 1e-3})
    config = (out / "config.json").read_text()
    with pytest.raises(ValueError, match=r"another config \(fields \['rl'\] differ\)"):
        reproduce(cfg, out)
    assert (out / "config.json").read_text() == config


def test_stopped_benchmark_continues_to_the_same_results(tmp_path, small_model_dir) -> None:
    cfg = ReproduceConfig.preset("smoke", model=str(small_model_dir), distill={"epochs": 2, "batch_size": 4,
                                 "group_size": 2, "train_batch_size": 4, "optimizer_steps_per_epoch": 1})
    straight = reproduce(cfg, tmp_path / "straight")

    with pytest.raises(ReproduceStopped, match="opd"):  # stop after the first of opd's two epochs
        reproduce(cfg, tmp_path / "stopped", callback=Events(stop_when=lambda e: e.series("seed0/opd/epoch")))
    assert not (tmp_path / "stopped" / "seed0" / "opd" / "train.json").exists()
    events = Events()
    resumed = reproduce(cfg, tmp_path / "stopped", callback=events)
    assert events.trainer_starts("seed0/opd") == [1]  # the first epoch came from the checkpoint
    assert events.series("seed0/opd/epoch") == [1, 2]  # its stored row replayed, then the second trained
    assert resumed["rows"] == straight["rows"] and resumed["compute"] == straight["compute"]
    curve = [json.loads(line) for line in (tmp_path / "stopped/seed0/opd/curve.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (tmp_path / "straight/seed0/opd/curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [1, 2]
    assert [r["loss"] for r in curve] == pytest.approx([r["loss"] for r in reference], rel=1e-5, abs=1e-12)


def test_seeds_run_apart_then_gather_into_the_same_report(smoke_run, tmp_path) -> None:
    """``--only-seed`` runs one seed (seed 1 first: it evaluates seed 0's base itself); a plain run then only
    gathers, and the rows equal those of the straight two-seed run."""
    from flowopd_studio.cli import main

    out, model = smoke_run
    args = ["reproduce", "--out", str(tmp_path), "--budget", "smoke", "--seeds", "2", "--model", str(model)]
    assert main([*args, "--only-seed", "1"]) == 0
    assert not (tmp_path / "results.json").exists()
    assert (tmp_path / "seed0" / "base" / "result.json").is_file()
    assert not (tmp_path / "seed0" / "opd").exists()
    assert main([*args, "--only-seed", "0"]) == 0
    events = Events()
    gathered = reproduce(ReproduceConfig.preset("smoke", seeds=2, model=str(model)), tmp_path, callback=events)
    assert set(events.statuses()) == {"skipped"}
    straight = json.loads((out / "results.json").read_text())
    assert gathered["rows"] == straight["rows"]
    with pytest.raises(ValueError, match="only_seed=2 is invalid"):
        reproduce(ReproduceConfig.preset("smoke", seeds=2, model=str(model)), tmp_path, only_seed=2)


def test_merged_evaluation_gives_the_metrics_of_the_lora_layers(smoke_run) -> None:
    import torch

    from flowopd.models import load_model
    from flowopd.reproduce.evaluation import row_metrics
    from flowopd.reproduce.stage import eval_config

    out, model_dir = smoke_run
    cfg = ReproduceConfig.preset("smoke", model=str(model_dir))
    assert cfg.eval_merged and not ReproduceConfig().eval_merged  # old runs' config.json lack it: not merged
    model = load_model(str(model_dir))
    base = {n: p.detach().clone() for n, p in model.transformer.named_parameters()}
    adapter = out / "seed0" / "teacher-text" / "adapter"
    through_lora = row_metrics(model, adapter, eval_config(cfg), cfg.eval_limit, merged=False)
    merged = row_metrics(model, adapter, eval_config(cfg), cfg.eval_limit, merged=True)
    assert merged == pytest.approx(through_lora, abs=1e-4)
    after = {n.replace(".base_layer", ""): p for n, p in model.transformer.named_parameters()}
    assert after.keys() == base.keys()  # the adapter was dropped
    assert all(torch.equal(after[n], p) for n, p in base.items())  # and the base weights are intact


def test_a_folder_from_before_eval_merged_continues_only_unmerged(tmp_path) -> None:
    from flowopd.reproduce.runner import check_folder

    old = ReproduceConfig.preset("default", eval_merged=False).to_dict()
    del old["eval_merged"]  # config.json as written before the field existed
    (tmp_path / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"fields \['eval_merged'\] differ"):
        check_folder(ReproduceConfig.preset("default"), tmp_path)
    check_folder(ReproduceConfig.preset("default", eval_merged=False), tmp_path)  # the way it ran: accepted


def test_eval_merged_must_be_a_boolean() -> None:
    with pytest.raises(ValueError, match="eval_merged='yes' is invalid: use true or false"):
        ReproduceConfig.preset("smoke", eval_merged="yes")


def test_swap_teachers_reruns_merge_and_distillation_with_the_new_teacher(smoke_run, tmp_path, monkeypatch,
                                                                          capsys) -> None:
    """``benchmarks/experiments/swap_teachers.py``: seed 0's merge and opd again, with seed 1's prefer teacher."""
    import importlib.util
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "experiments" / "swap_teachers.py"
    spec = importlib.util.spec_from_file_location("swap_teachers", script)
    swap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(swap)
    out, _ = smoke_run
    other = str(out / "seed1" / "teacher-prefer" / "adapter")
    monkeypatch.setattr(sys, "argv", ["swap", str(out), "0", "--teacher", f"prefer={other}", "--out", str(tmp_path),
                                      "--opd-epochs", "2"])
    swap.main()
    merge = json.loads((tmp_path / "coldstart-merge" / "coldstart.json").read_text())
    assert merge["teachers"]["prefer"] == other
    assert merge["teachers"]["text"] == str(out / "seed0" / "teacher-text" / "adapter")
    for stage in ("coldstart-merge", "opd", "opd-2ep"):
        assert set(json.loads((tmp_path / stage / "result.json").read_text())["metrics"]) == METRICS
    opd = json.loads((tmp_path / "opd" / "checkpoint" / "config.json").read_text())
    assert opd["teachers"]["prefer"] == other and opd["init"] == str(tmp_path / "coldstart-merge" / "adapter")
    assert "opd {" in capsys.readouterr().out
    # --opd-epochs continues opd's checkpoint (1 smoke epoch) to 2 epochs: twice the steps, its own result
    from flowopd.training.checkpoint import checkpoint_step

    assert checkpoint_step(tmp_path / "opd-2ep") == 2 * checkpoint_step(tmp_path / "opd") > 0
    assert set(json.loads((tmp_path / "opd-2ep" / "result.json").read_text())["metrics"]) == METRICS
    with pytest.raises(SystemExit, match="TASK=ADAPTER_FOLDER"):
        swap.parse_teachers(["painting=/x"])


def test_grpo_variant_changes_every_grpo_stage_it_runs(smoke_run, tmp_path, monkeypatch) -> None:
    """``benchmarks/experiments/grpo_variant.py``: the plan's GRPO stages with other fields and batch size,
    evaluated."""
    import importlib.util
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "experiments" / "grpo_variant.py"
    spec = importlib.util.spec_from_file_location("grpo_variant", script)
    variant = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variant)
    _, model_dir = smoke_run
    monkeypatch.setattr(sys, "argv", ["variant", "--out", str(tmp_path), "--budget", "smoke", "--model",
                                      str(model_dir), "--set", '{"sde_window": 1}', "--batch-size", "8",
                                      "--stages", "teacher-prefer,grpo-mix"])
    variant.main()
    for stage, rewards in (("teacher-prefer", {"prefer"}), ("grpo-mix", {"compose", "text", "prefer", "quality"})):
        result = json.loads((tmp_path / "seed0" / stage / "result.json").read_text())
        assert (result["config"]["sde_window"], result["config"]["batch_size"], result["images"]) == (1, 8, 8)
        assert set(result["config"]["rewards"]) == rewards and set(result["metrics"]) == METRICS
    cfg = ReproduceConfig.preset("smoke")
    with pytest.raises(SystemExit, match=r"--stages \['opd-fast'\] are not stages of the plan"):
        variant.variant_plan(cfg, 0, tmp_path, ["opd-fast"], {}, None)
