"""``--record``: a foreground command is a run of the store as it happens (metrics, samples, artifacts,
progress), so the app shows it; a failing one ends failed with a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

from flowopd_studio.storage.store import Store

FAST = dict(batch_size=8, group_size=4, train_batch_size=4, num_steps=3, optimizer_steps_per_epoch=2, eval_steps=3,
            ema=False, sample_every=1, checkpoint_every=1, lora_rank=4, lora_alpha=8.0, epochs=2,
            rewards={"prefer": 1.0}, prompt_tasks={"prefer": 1.0})


def test_a_recorded_grpo_run_is_in_the_store_with_its_metrics_and_adapter(cli, tmp_path, small_model_dir) -> None:
    config, out, home = tmp_path / "grpo.json", tmp_path / "out", tmp_path / "home"
    config.write_text(json.dumps(FAST))
    code, stdout, stderr = cli(*["train", "grpo", "--config", str(config), "--out", str(out), "--model",
                                str(small_model_dir), "--record", "--home", str(home), "--name", "teacher-cli"])
    assert code == 0, stderr
    with Store(home) as store:
        (run,) = store.list_runs()
        assert (run.name, run.stage, run.status, run.origin) == ("teacher-cli", "grpo", "finished", "cli")
        assert (run.step, run.total_steps, run.device) == (4, 4, "cpu") and run.started_at and run.ended_at
        assert run.config["rewards"] == {"prefer": 1.0} and run.config["epochs"] == 2  # the stage's config
        where = json.loads((store.run_dir(run.id) / "foreground.json").read_text())
        assert where["out"] == str(out.resolve()) and "--record" in where["argv"]
        assert [r["step"] for r in store.metrics(run.id, "loss")] == [2, 4]
        assert {"reward/prefer", "kl/base", "lr", "images_per_s"} <= {r["name"] for r in store.metrics(run.id)}
        artifacts = {a["kind"]: a for a in store.artifacts(run.id)}
        adapter = store.path(artifacts["adapter"]["path"])
        assert adapter == store.run_dir(run.id) / "adapter" and artifacts["adapter"]["step"] == 4
        assert (adapter / "adapter.json").read_bytes() == (out / "adapter" / "adapter.json").read_bytes()
        assert "checkpoint" not in artifacts  # it stays in --out, outside the data folder
        samples = store.samples(run.id)
        assert samples and all(store.path(s["path"]).is_file() for s in samples)
        assert "grpo" in Path(store.path(run.log_path)).read_text()  # the command's log lines are the run's
    assert f"recorded as run {run.id} (finished)" in stdout
    code, shown, _ = cli("runs", "show", run.id, "--home", str(home))
    assert code == 0 and "origin       cli" in shown and "progress     grpo: epoch 2/2" in shown
    code, listed, _ = cli("runs", "list", "--home", str(home))
    assert code == 0 and run.id in listed and "teacher-cli" in listed


def test_a_recorded_run_that_fails_ends_failed_with_one_line(cli, tmp_path, small_model_dir) -> None:
    config, home = tmp_path / "opd.json", tmp_path / "home"
    config.write_text(json.dumps({"teachers": {"prefer": str(tmp_path)}, "prompt_tasks": {"prefer": 1.0}}))
    code, _, stderr = cli(*["train", "opd", "--config", str(config), "--out", str(tmp_path / "out"), "--model",
                           str(small_model_dir), "--record", "--home", str(home)])
    assert code == 2 and "flowopd: error:" in stderr
    with Store(home) as store:
        (run,) = store.list_runs()
        assert run.status == "failed" and "\n" not in run.error and run.error


def test_home_without_record_is_refused(cli, tmp_path) -> None:
    code, _, stderr = cli(*["eval", "--home", str(tmp_path), "--steps", "2"])
    assert code == 2 and "--home and --name need --record" in stderr


def test_a_stop_ends_a_recorded_run_stopped_and_it_resumes_only_by_its_command(tmp_path) -> None:
    import pytest

    from flowopd.config.eval import EvalConfig
    from flowopd.events import StopRequested
    from flowopd_studio.storage.errors import InvalidRunState
    from flowopd_studio.storage.queue import resume
    from flowopd_studio.storage.recorder import record

    with pytest.raises(StopRequested):
        with record("eval", EvalConfig().to_dict(), home=tmp_path, out=tmp_path / "out"):
            raise StopRequested("evaluation stopped after 1 of 4 tasks")
    with Store(tmp_path) as store:
        (run,) = store.list_runs()
        assert (run.status, run.error, run.origin) == ("stopped", None, "cli")
        with pytest.raises(InvalidRunState, match="run that command again"):
            resume(store, run.id, start=False)
        assert store.get_run(run.id).status == "stopped"  # refused, nothing changed


def test_checkpoint_and_sample_commands_pause_only_a_stage_that_restarts_itself(tmp_path) -> None:
    """...and only a stop asks a trainer to stop before its next optimizer step (``stop_now``)."""
    from flowopd_studio.storage.recorder import StoreCallback
    from flowopd_studio.storage.reporter import Reporter

    with Store(tmp_path) as store:
        for pausable in (False, True):
            run = store.start_foreground("eval", {}, 1234)
            callback = StoreCallback(Reporter(store, run, 1234), pausable=pausable)
            store.send_command(run.id, "checkpoint")
            assert not callback.stop_now()  # a pause waits for the epoch's end; only a stop lands mid-epoch
            assert callback.should_stop() is pausable and not callback.stop
            store.send_command(run.id, "stop")
            assert callback.stop_now() and callback.should_stop() and callback.stop


def test_a_stopped_sft_cold_start_stops_the_benchmark(tmp_path, monkeypatch) -> None:
    import pytest

    from flowopd.events import StopRequested
    from flowopd.reproduce.plan import StageSpec
    from flowopd.reproduce.stage import ReproduceStopped, _train_coldstart

    def stopped(*args, **kwargs):
        raise StopRequested("cold-start SFT stopped at step 3 of 200; nothing was written")

    monkeypatch.setattr("flowopd.coldstart.trainer.run_coldstart", stopped)
    with pytest.raises(ReproduceStopped, match="coldstart-sft: cold-start SFT stopped at step 3"):
        _train_coldstart(StageSpec("coldstart-sft", "coldstart", None), tmp_path, None, None)
