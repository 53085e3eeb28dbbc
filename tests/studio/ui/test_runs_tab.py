"""The Runs tab: the store's downsampled series, the plot data and the reward figure, teachers' references,
the sample scrubber, commands, ``?run=``; a plot of 10 runs x 10,000 rows under a second; and, with a real
GRPO worker training, every read handler under a second and the API (plots gain points, stop, resume).
"""

from __future__ import annotations

import io
import json
import os
import signal
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from flowopd_studio.services import runs_view as rv
from flowopd_studio.storage.store import Store
from flowopd_studio.ui import runs_tab
from flowopd_studio.ui.state import AppState

FAST = dict(batch_size=8, group_size=4, train_batch_size=4, num_steps=3, optimizer_steps_per_epoch=2, eval_steps=3,
            ema=False, sample_every=1, checkpoint_every=1, lora_rank=4, lora_alpha=8.0)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("FLOWOPD_HOME", raising=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def store(home: Path):
    with Store(home) as s:
        yield s


@pytest.fixture
def state(home: Path, store) -> AppState:
    return AppState(model=None, model_name="none", home=home)  # the Runs tab never samples


def _curve(store: Store, run_id: str, name: str, values: list[float], start: int = 1) -> None:
    store.add_metrics(run_id, [(start + i, name, v, 0.0) for i, v in enumerate(values)])


def test_metric_series_downsamples_in_the_query(store) -> None:
    run = store.create_run("grpo", {})
    _curve(store, run.id, "loss", [float(i) for i in range(10_000)])
    _curve(store, run.id, "lr", [1.0] * 50)
    rows = store.metric_series([run.id], ["loss", "lr"], max_points=2000)
    loss = [r["step"] for r in rows if r["name"] == "loss"]
    assert len(loss) <= 2000 and loss[0] == 1 and loss[-1] == 10_000  # first and newest kept
    assert loss == sorted(loss) and len({b - a for a, b in zip(loss, loss[1:-1])}) == 1  # an even stride
    assert [r["step"] for r in rows if r["name"] == "lr"] == list(range(1, 51))  # short series untouched
    assert [r["step"] for r in store.metric_series([run.id], ["loss"], 3, since_step=9_990)] == [9_991, 9_996, 10_000]
    assert store.metric_names([run.id]) == ["loss", "lr"]
    with pytest.raises(ValueError, match="max_points"):
        store.metric_series([run.id], ["loss"], 1)


def test_panels_split_names_smooth_and_label_runs(store) -> None:
    a, b = store.create_run("opd", {}, name="a"), store.create_run("reproduce", {}, name="b")
    for name in ("reward/text", "reward/total", "kl/teacher", "kl/teacher/text", "loss", "lr", "grad_norm"):
        _curve(store, a.id, name, [0.0, 1.0, 1.0])
    _curve(store, a.id, "kl/teacher/step_0", [5.0, 0.5])
    _curve(store, a.id, "kl/teacher/step_2", [7.0, 0.7])
    _curve(store, b.id, "seed0/opd/reward/text", [0.2, 0.4])
    frames = rv.panel_frames(store, [a], smoothing=0.0)
    assert set(frames["reward"]["series"]) == {"reward/text"}  # reward/total is not a task
    assert set(frames["kl"]["series"]) == {"kl/teacher", "kl/teacher/text"}
    assert list(frames["loss"]["value"]) == [0.0, 1.0, 1.0] and len(frames["lr"]) == 3
    smooth = rv.panel_frames(store, [a], smoothing=0.9)["loss"]["value"].tolist()
    assert smooth[0] == 0.0 and 0.0 < smooth[1] < 1.0  # EMA, debiased
    both = rv.panel_frames(store, [a, b])["reward"]
    assert set(both["series"]) == {"a: reward/text", "b: seed0/opd/reward/text"}
    profile = rv.kl_profile(store, [a])
    assert profile.to_dict("list") == {"denoising step": [0, 2], "value": [0.5, 0.7],
                                       "series": ["kl/teacher", "kl/teacher"]}


def _set_teacher_scores(store: Store, name: str, scores: str) -> None:
    """Write a teachers row's ``scores`` (the registry's column; added here if this store predates it)."""
    if "scores" not in store.db["teachers"].columns_dict:
        store.db.execute("ALTER TABLE teachers ADD COLUMN scores TEXT")
    store.db.execute("UPDATE teachers SET scores = ? WHERE name = ?", [scores, name])


def test_teacher_references_from_table_eval_runs_training_reward_and_reproduce(store) -> None:
    teacher_text, teacher_prefer = store.create_run("grpo", {}), store.create_run("grpo", {})
    _curve(store, teacher_text.id, "reward/text", [0.1] * 5 + [0.5] * 5)
    _curve(store, teacher_prefer.id, "reward/prefer", [0.3] * 10)
    adapters = {"text": str(store.run_dir(teacher_text.id) / "adapter"),
                "prefer": str(store.run_dir(teacher_prefer.id) / "adapter")}
    student = store.create_run("opd", {"teachers": adapters})
    # last resort: the teacher run's training reward (mean of its last 5 values)
    assert rv.teacher_references(store, student) == {"text": 0.5, "prefer": 0.3}
    evaluation = store.create_run("eval", {"adapter": adapters["prefer"]})  # an eval run of the adapter wins
    _curve(store, evaluation.id, "eval/prefer", [0.62])
    assert rv.teacher_references(store, student) == {"text": 0.5, "prefer": 0.62}
    # a registry row with scores wins; bad JSON is no score
    store.add_teacher("t-text", "text", "text", adapters["text"], source_run=teacher_text.id)
    _set_teacher_scores(store, "t-text", json.dumps({"text": 0.8}))
    store.add_teacher("t-bad", "prefer", "prefer", "/elsewhere", source_run=teacher_prefer.id)
    _set_teacher_scores(store, "t-bad", "not json")
    assert rv.teacher_references(store, student) == {"text": 0.8, "prefer": 0.62}
    mix = store.create_run("grpo", {})  # no teachers of its own: the registered teachers' scores of their tasks
    assert rv.teacher_references(store, mix) == {"text": 0.8}
    assert rv.teacher_references(store, teacher_text) == {}  # a teacher is not its own reference
    bench = store.create_run("reproduce", {})
    store.add_metrics(bench.id, [(1, "eval/teacher-text/text", 0.4, 0.0), (9, "eval/teacher-text/text", 0.6, 0.0),
                                 (2, "eval/opd/text", 0.9, 0.0)])
    assert rv.teacher_references(store, bench) == pytest.approx({"text": 0.5})  # its own, averaged over the seeds


def test_passes_mark_where_a_student_reaches_its_teacher(store) -> None:
    bench = store.create_run("reproduce", {}, name="bench")
    _curve(store, bench.id, "seed0/opd/reward/text", [0.1, 0.3, 0.7, 0.9])
    _curve(store, bench.id, "seed0/teacher-text/reward/text", [0.2, 0.8])
    _curve(store, bench.id, "seed0/opd/reward/prefer", [0.1, 0.2])
    frame = rv.panel_frames(store, [bench])["reward"]
    marks = rv.passes(frame, {bench.id: {"text": 0.6, "prefer": 0.5}})
    assert [(m.series, m.task, m.step) for m in marks] == [("seed0/opd/reward/text", "text", 3)]  # not the teacher
    fig = rv.reward_figure(frame, {bench.id: {"text": 0.6}}, marks)
    ax = fig.axes[0]
    assert [line.get_linestyle() for line in ax.get_lines()].count("--") == 1
    fig.savefig(io.BytesIO(), format="png")


def test_runs_table_shows_progress_eta_and_cli_runs(state, store, monkeypatch) -> None:
    started = []  # the table's queue tick starts queued runs: here in no real process
    monkeypatch.setattr("flowopd_studio.storage.queue.spawn_worker", lambda home, run_id: started.append(run_id) or 1)
    queued = store.create_run("grpo", {}, name="queued-one")
    cli = store.start_foreground("eval", {}, pid=os.getpid(), name="from-cli")
    store.update_worker(cli.id, os.getpid(), step=3, total_steps=12, eta_s=75.0, progress="eval: task 3/12")
    table, _ = runs_tab.runs_table(state)
    rows = {r["id"]: r for r in table.to_dict("records")}
    assert rows[cli.id]["origin"] == "cli" and rows[cli.id]["progress"] == "25% · 3/12"
    assert rows[cli.id]["ETA"] == "1 min 15 s" and rows[cli.id]["line"] == "eval: task 3/12"
    assert started == [] and rows[queued.id]["status"] == "queued"  # the cli run counts: one at a time
    header, error, logs = runs_tab.run_status(state, cli.id)
    assert '<progress value="3" max="12"' in header and "ETA 1 min 15 s" in header and "origin: cli" in header
    assert error.visible is False


def test_a_stop_shows_as_stopping_at_once(state, store) -> None:
    """The worker ends a run at its next poll, after a checkpoint; until then the table and the header say
    stopping… instead of running (and a resumed run is running again, its old stop forgotten)."""
    run = store.start_foreground("eval", {}, pid=os.getpid(), name="long")
    assert runs_tab.runs_table(state)[0].set_index("id").loc[run.id, "status"] == "running"
    store.send_command(run.id, "stop")
    assert store.stopping_runs() == {run.id}
    assert runs_tab.runs_table(state)[0].set_index("id").loc[run.id, "status"] == "stopping…"
    header, _, _ = runs_tab.run_status(state, run.id)
    assert "<b>stopping…</b>" in header
    store.take_commands(run.id)  # the worker took it: still stopping until the run ends
    assert store.stopping_runs() == {run.id}


def test_sample_scrubber_walks_the_steps_of_one_prompt_and_seed(state, store) -> None:
    run = store.create_run("grpo", {})
    folder = store.run_dir(run.id) / "samples"
    folder.mkdir()
    for step in (2, 4, 6):
        for seed, prompt in ((0, "a red circle"), (1, "a sign")):
            path = folder / f"s{step}_{seed}.png"
            Image.new("RGB", (8, 8), (step * 40, seed * 200, 0)).save(path)
            store.add_sample(run.id, step, prompt, seed, path)
    choice, slider, image, caption = runs_tab.run_samples(state, run.id, None, None)
    assert choice.value == "seed 0: a red circle" and slider.maximum == 2 and "step **6**" in caption
    assert image.getpixel((0, 0)) == (240, 0, 0)  # the newest step by default
    _, _, image, caption = runs_tab.run_samples(state, run.id, "seed 1: a sign", 0)
    assert image.getpixel((0, 0)) == (80, 200, 0) and "step **2** (1 of 3" in caption
    assert runs_tab.run_samples(state, "", None, None)[2] is None


def test_commands_answer_and_refuse_with_the_reason(state, store, monkeypatch) -> None:
    import gradio as gr

    monkeypatch.setattr("flowopd_studio.storage.queue.spawn_worker", lambda home, run_id: os.getpid())
    run = store.create_run("grpo", {})
    store.claim_next(1)
    store.set_pid(run.id, os.getpid())
    assert "sample requested" in runs_tab.send("sample", state, run.id)
    assert "checkpoint requested" in runs_tab.send("checkpoint", state, run.id)
    assert "stopping" in runs_tab.stop_run(state, run.id)
    with pytest.raises(gr.Error, match="running: stop it first"):
        runs_tab.delete_run(state, run.id)
    store.finish(run.id, os.getpid(), "stopped")
    with pytest.raises(gr.Error, match="nothing to stop"):
        runs_tab.stop_run(state, run.id)
    message, row, cleared = runs_tab.delete_run(state, run.id)
    assert "deleted" in message and cleared == "" and row.visible is False
    for bad in ("../etc", "r0123456789/../../x", ""):
        with pytest.raises(gr.Error, match="not a run id"):
            runs_tab.open_run(state, bad)
    with pytest.raises(gr.Error, match="no run"):
        runs_tab.open_run(state, "r0123456789")


def test_query_param_opens_a_run_and_refuses_a_path(state, store) -> None:
    older, newer = store.create_run("grpo", {}), store.create_run("grpo", {})
    request = lambda **q: SimpleNamespace(query_params=q)  # noqa: E731
    assert runs_tab.on_load(state, request(run=older.id)) == (older.id, "")
    run_id, message = runs_tab.on_load(state, request(run="../../etc/passwd"))
    assert run_id == "" and "refused" in message and "not a run id" in message
    assert runs_tab.on_load(state, request())[0] == newer.id


def test_plot_of_10_runs_x_10000_rows_renders_under_a_second(state, store) -> None:
    """The whole plot handler (store queries, frames, smoothing, references) plus the PNG the browser gets."""
    ids = []
    for k in range(10):
        run = store.create_run("opd", {}, name=f"run{k}")
        _curve(store, run.id, "reward/text", [k / 10 + i / 20_000 for i in range(10_000)])
        ids.append(run.id)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        fig, kl, profile, loss, lr, notes = runs_tab.run_plots(state, ids[0], ids[1:], 0.6)
        fig.savefig(io.BytesIO(), format="png")
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(f"\nplot of 10 runs x 10,000 rows: median {median:.3f} s, max {max(times):.3f} s")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 10 and all(len(line.get_xdata()) <= rv.MAX_POINTS for line in lines)
    assert all(line.get_xdata()[-1] == 10_000 for line in lines)
    assert median < 1.0


# -- with a real worker ------------------------------------------------------------------------------------
def _wait(condition, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def app(small_model, home: Path):
    from flowopd_studio.ui import build_app

    state = AppState(small_model, "small random", home=home)
    demo = build_app(state)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield state, demo.local_url
    demo.close()
    with Store(home) as store:  # a failed test must not leave its worker training
        for run in store.list_runs("running"):
            if run.pid and run.pid != os.getpid():
                try:
                    os.killpg(run.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.mark.slow
def test_live_run_handlers_under_a_second_and_api_stop_resume(app, store, small_model_dir) -> None:
    from gradio_client import Client

    from flowopd_studio.storage.queue import submit

    state, url = app
    config = dict(FAST, epochs=40, rewards={"prefer": 1.0}, prompt_tasks={"prefer": 1.0}, model=str(small_model_dir))
    run = submit(store, "grpo", config, name="live")
    client = Client(url, verbose=False)

    def points() -> int:
        loss = client.predict(run.id, [], 0.0, api_name="/run_plots")[3]
        return len(loss["data"]) if loss else 0

    first = _wait(points, 120, "the first loss rows")
    assert client.predict(api_name="/runs_load")[0] == run.id  # gr.Request reaches the handler; no ?run: the live run
    calls = {"runs_table": lambda: runs_tab.runs_table(state),
             "run_status": lambda: runs_tab.run_status(state, run.id),
             "run_plots": lambda: runs_tab.run_plots(state, run.id, [], 0.5),
             "run_samples": lambda: runs_tab.run_samples(state, run.id, None, None),
             "tick": lambda: runs_tab.tick(state, run.id, [], 0.5, None),
             "on_load": lambda: runs_tab.on_load(state, SimpleNamespace(query_params={"run": run.id}))}
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(5):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
        time.sleep(0.2)
    assert store.get_run(run.id).status == "running", "the run ended before the handlers were timed"
    medians = {k: statistics.median(v) for k, v in times.items()}
    print("\nread handlers while a worker trains (median / max s): " +
          ", ".join(f"{k} {medians[k]:.3f}/{max(times[k]):.3f}" for k in calls))
    assert max(max(v) for v in times.values()) < 1.0, times

    _wait(lambda: points() > first, 120, "the loss plot to gain points")
    t0 = time.perf_counter()
    assert "stopping" in client.predict(run.id, api_name="/stop_run")
    assert time.perf_counter() - t0 < 1.0
    stopped = _wait(lambda: (r := store.get_run(run.id)).status != "running" and r, 120, "the stop")
    assert stopped.status == "stopped", stopped.error
    t0 = time.perf_counter()
    assert "queued" in client.predict(run.id, api_name="/resume_run") or store.get_run(run.id).status == "running"
    print(f"resume answered in {time.perf_counter() - t0:.3f} s")
    _wait(lambda: store.get_run(run.id).status == "running" and store.get_run(run.id).pid, 60, "the resumed worker")
    assert "stopping" in client.predict(run.id, api_name="/stop_run")
    _wait(lambda: store.get_run(run.id).status == "stopped", 120, "the second stop")
    status = client.predict(run.id, api_name="/run_status")
    assert "stopped" in status[0]
    with pytest.raises(Exception, match="not a run id"):
        client.predict("../etc", api_name="/open_run")


def test_an_empty_plot_frame_is_typed_so_the_browser_keeps_a_numeric_axis(store) -> None:
    """A live run's first poll has no rows; the browser's plot keeps that frame's encoding, so "value" must be
    quantitative already (an untyped empty frame made it nominal and the run's points drew no line)."""
    import gradio as gr

    from flowopd_studio.services import runs_view as rv

    run = store.create_run("grpo", {}, "empty")
    frames = rv.panel_frames(store, [store.get_run(run.id)])
    for panel in ("kl", "loss", "lr"):
        types = gr.LinePlot(x="step", y="value", color="series").postprocess(frames[panel][rv.FRAME_COLUMNS])
        assert types.datatypes == {"step": "quantitative", "value": "quantitative", "series": "nominal"}
    profile = gr.LinePlot(x="denoising step", y="value", color="series").postprocess(
        rv.kl_profile(store, [store.get_run(run.id)]))
    assert profile.datatypes["value"] == "quantitative"


def test_a_small_sample_is_enlarged_pixel_for_pixel_and_a_lone_point_is_drawn(store, tmp_path) -> None:
    import pandas as pd
    from PIL import Image

    run = store.create_run("grpo", {}, name="tiny-samples")
    path = store.run_dir(run.id) / "samples" / "s.png"
    path.parent.mkdir(parents=True)
    small = Image.new("RGB", (32, 32), (10, 20, 30))
    small.putpixel((0, 0), (255, 0, 0))
    small.save(path)
    store.add_sample(run.id, 1, "a sign", 0, path)
    big = rv.sample_image(store, {"path": str(path.relative_to(store.home))})
    assert big.size == (256, 256) and big.getpixel((7, 7)) == (255, 0, 0) and big.getpixel((8, 8)) == (10, 20, 30)
    frame = pd.DataFrame({"run_id": [run.id], "series": ["reward/text"], "name": ["reward/text"], "step": [4],
                          "value": [0.5]})
    fig = rv.reward_figure(frame, {}, [])
    assert fig.axes[0].get_lines()[0].get_marker() == "o"  # one point: a dot


def test_the_controls_follow_the_run_status(state, store) -> None:
    """Stop only while a run can stop; Resume only once it stopped, failed or was interrupted; a finished run
    offers none of them."""
    def interactive(run_id):
        return [b.interactive for b in runs_tab.run_controls(state, run_id)]  # stop, resume, sample, checkpoint

    run = store.start_foreground("grpo", {}, os.getpid(), name="live")
    assert interactive(run.id) == [True, False, True, True]
    store.finish(run.id, os.getpid(), "finished")
    assert interactive(run.id) == [False, False, False, False]
    other = store.start_foreground("grpo", {}, os.getpid(), name="halted")
    store.finish(other.id, os.getpid(), "stopped")
    assert interactive(other.id) == [False, True, False, False]
    assert interactive("") == [False, False, False, False] == interactive("r0000000000")
