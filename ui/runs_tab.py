"""The Runs tab: every run (workers' and ``--record`` command lines') with status, progress and ETA; live
plots read from the store; sample images by step; the log; stop, resume, delete, sample now, checkpoint now.

The tab holds no state the store lacks: a ``gr.Timer`` re-reads the store every 2 s (``concurrency_limit=None``,
so polls never queue behind a generation), a refresh or a second browser shows the same, and ``?run=ID`` opens a
run. The plot data come from :mod:`flowopd_studio.services.runs_view`. The reward plot is matplotlib (gr.Plot):
gr.LinePlot cannot draw the dashed teacher lines or the pass marks; KL, loss and lr are gr.LinePlot (long format).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import partial

import gradio as gr

from ..services import runs_view as rv
from ..storage import queue
from ..storage.errors import CheckpointError, RunNotFound, StoreError
from ..storage.paths import check_run_id
from .state import AppState

TIMER_S = 2.0
NO_RUN = "<p>No run selected: pick one in the table, or open <code>?run=ID</code>.</p>"
SKIP_PLOTS = 6  # reward, kl, profile, loss, lr, passes


@dataclass
class RunsWidgets:
    timer: gr.Timer
    table: gr.Dataframe
    run_id: gr.Textbox
    compare: gr.Dropdown
    header: gr.HTML
    error: gr.Textbox
    message: gr.Markdown
    buttons: dict[str, gr.Button]
    confirm_row: gr.Row
    smoothing: gr.Slider
    plots: list  # reward (gr.Plot), kl, profile, loss, lr (gr.LinePlot), passes (gr.Markdown)
    sample_choice: gr.Dropdown
    sample_index: gr.Slider
    sample_image: gr.Image
    sample_caption: gr.Markdown
    logs: gr.Textbox


def render(state: AppState) -> RunsWidgets:
    timer = gr.Timer(TIMER_S, active=False)  # polls only while the Runs tab is open (listen)
    table = gr.Dataframe(headers=rv.TABLE_COLUMNS, interactive=False, label="Runs (select a row to open it)",
                         max_height=280, elem_id="runs-table")
    with gr.Row():
        run_id = gr.Textbox(label="Open run (id)", max_lines=1, scale=1, elem_id="runs-open")
        compare = gr.Dropdown([], multiselect=True, allow_custom_value=True, scale=2,
                              label=f"Compare with (up to {rv.MAX_PLOT_RUNS - 1} more runs on the same plots)")
    header = gr.HTML(NO_RUN, elem_id="runs-header")
    error = gr.Textbox(label="Error", visible=False, lines=4, max_lines=12)
    with gr.Row():
        buttons = {k: gr.Button(label, size="sm", variant=v) for k, label, v in [
            ("stop", "Stop", "stop"), ("resume", "Resume", "secondary"), ("sample", "Sample now", "secondary"),
            ("checkpoint", "Checkpoint now", "secondary"), ("delete", "Delete…", "secondary")]}
    with gr.Row(visible=False) as confirm_row:
        buttons["confirm"] = gr.Button("Yes, delete this run and its files", variant="stop", size="sm")
        buttons["cancel"] = gr.Button("Cancel", size="sm")
    message = gr.Markdown()
    smoothing = gr.Slider(0, 0.99, value=0.5, step=0.01, label="Smoothing (EMA weight; 0 = raw)")
    line = dict(x="step", y="value", color="series", height=320, tooltip="axis", buttons=["export", "fullscreen"])
    reward = gr.Plot(label="Reward per task (dashed: each teacher's score; star: the student passes it)",
                     format="png")
    passes = gr.Markdown()
    # KL alone on its row: its legend (teacher, anchor and base, per task) needs the page's width
    kl = gr.LinePlot(label="KL to the routed teacher and to the anchor, per training step", **line)
    with gr.Row():
        profile = gr.LinePlot(label="KL per denoising step (latest training step)",
                              **{**line, "x": "denoising step"})
        loss = gr.LinePlot(label="Loss", **line)
        lr = gr.LinePlot(label="Learning rate", **line)
    with gr.Row():
        with gr.Column():
            sample_choice = gr.Dropdown([], label="Sample prompt and seed", allow_custom_value=True)
            sample_index = gr.Slider(0, 1, value=0, step=1, label="Sampled step (drag to scrub through the run)")
            sample_caption = gr.Markdown()
        sample_image = gr.Image(label="Sample", type="pil", height=300, interactive=False)
    logs = gr.Textbox(label="Log (last lines of worker.log)", lines=12, max_lines=12, autoscroll=True)
    return RunsWidgets(timer, table, run_id, compare, header, error, message, buttons, confirm_row, smoothing,
                       [reward, kl, profile, loss, lr, passes], sample_choice, sample_index, sample_image,
                       sample_caption, logs)


# -- read handlers -------------------------------------------------------------------------------------------
def _valid(run_id: str | None) -> str | None:
    run_id = (run_id or "").strip()
    return run_id if run_id and rv.RUN_ID_RE.fullmatch(run_id) else None


def open_run(state: AppState, run_id: str) -> str:
    """The id of a run to open, checked (``../x`` and unknown ids are refused with the reason)."""
    try:
        run_id = check_run_id((run_id or "").strip())
        with state.store() as store:
            return store.get_run(run_id).id
    except StoreError as err:
        raise gr.Error(str(err)) from None


def on_load(state: AppState, request: gr.Request) -> tuple[str, str]:
    """``?run=ID`` opens that run; otherwise the newest running run, else the newest run."""
    asked = request.query_params.get("run") if request else None
    with state.store() as store:
        if asked is not None:
            try:
                return store.get_run(check_run_id(asked)).id, ""
            except StoreError as err:
                return "", f"**?run={html.escape(asked)} refused:** {html.escape(str(err))}"
        runs = store.list_runs()
    running = [r for r in runs if r.status == "running"]
    return ((running or runs)[0].id if runs else ""), ""


def runs_table(state: AppState):
    """The runs table and the compare list's choices (after a queue tick: dead workers reaped, queued started)."""
    with state.store() as store:
        try:
            queue.tick(store)
        except Exception as err:  # a stuck queue must not blank the table; the table says the rest
            gr.Warning(f"queue tick failed: {err}")
        runs, stopping = store.list_runs(), store.stopping_runs()
    return rv.runs_table(runs, stopping), gr.Dropdown(choices=[(f"{r.name} ({r.id})", r.id) for r in runs])


def run_status(state: AppState, run_id: str):
    """Header (status, progress bar, ETA, origin, progress line, error line), error text and log tail."""
    if not _valid(run_id):
        return NO_RUN, gr.Textbox(value="", visible=False), ""
    with state.store() as store:
        try:
            run = store.get_run(run_id)
        except StoreError as err:
            return f"<p>{html.escape(str(err))}</p>", gr.Textbox(value="", visible=False), ""
        logs = rv.log_tail(store, run)
        status = rv.shown_status(run, store.stopping_runs())
    frac = rv.progress_fraction(run)
    bar = (f'<progress value="{run.step}" max="{run.total_steps}" style="width:100%"></progress>'
           f" {frac:.0%} · step {run.step}/{run.total_steps}" if frac is not None else f"step {run.step}")
    eta = f" · ETA {rv.format_eta(run.eta_s)}" if run.status == "running" and run.eta_s is not None else ""
    err_line = (run.error or "").splitlines()[0] if run.error else ""
    parts = [f"<h3>{html.escape(run.name)} <code>{run.id}</code> · {run.stage} · <b>{status}</b></h3>",
             f"<div>{bar}{eta}</div>",
             f"<p>origin: {run.origin} · attempts: {run.attempts} · device: {html.escape(run.device or '?')} · "
             f'link: <a href="?run={run.id}">?run={run.id}</a></p>']
    if run.progress:
        parts.append(f"<p><i>{html.escape(run.progress)}</i></p>")
    if err_line:
        parts.append(f'<p style="color:#c0392b">{html.escape(err_line)}</p>')
    return "".join(parts), gr.Textbox(value=run.error or "", visible=bool(run.error)), logs


def run_plots(state: AppState, run_id: str, compare: list[str] | None, smoothing: float):
    """Reward figure, KL, KL-per-denoising-step, loss and lr frames, and the pass notes of the shown runs."""
    with state.store() as store:
        runs = rv.plot_runs(store, [run_id, *(compare or [])])
        frames = rv.panel_frames(store, runs, float(smoothing or 0))
        refs = {r.id: rv.teacher_references(store, r) for r in runs}
        profile = rv.kl_profile(store, runs)
    marks = rv.passes(frames["reward"], refs)
    fig = rv.reward_figure(frames["reward"], refs, marks)
    notes = "".join(f"**Passes:** {m.series} passes teacher *{m.task}* ({m.teacher:.3f}) at step {m.step}\n\n"
                    for m in marks)  # no emoji: a browser without an emoji font draws a missing-glyph box
    cols = rv.FRAME_COLUMNS
    return fig, frames["kl"][cols], profile, frames["loss"][cols], frames["lr"][cols], notes


def run_plots_live(state: AppState, run_id: str, compare: list[str] | None, smoothing: float):
    """The timer's plots: redrawn only while a shown run is running (or queued), else left as they are."""
    with state.store() as store:
        live = any(r.status in ("running", "queued") for r in rv.plot_runs(store, [run_id, *(compare or [])]))
    return run_plots(state, run_id, compare, smoothing) if live else (gr.skip(),) * SKIP_PLOTS


def run_samples(state: AppState, run_id: str, choice: str | None, index: float | None):
    """The sample scrubber: prompt/seed choices, a slider over the steps that have samples, the image."""
    with state.store() as store:
        groups = rv.sample_groups(store, run_id) if _valid(run_id) else {}
        if not groups:
            return (gr.Dropdown(choices=[], value=None), gr.Slider(maximum=1, value=0), None,
                    "No samples yet: they appear at the run's sample steps, or press **Sample now**.")
        choice = choice if choice in groups else next(iter(groups))
        rows = groups[choice]
        i = min(max(int(index if index is not None else len(rows) - 1), 0), len(rows) - 1)
        image = rv.sample_image(store, rows[i])
    caption = f"step **{rows[i]['step']}** ({i + 1} of {len(rows)} sampled steps) · seed {rows[i]['seed']}"
    # a slider needs maximum > minimum: with one sampled step it spans 0..1 and index 1 clamps to 0
    return (gr.Dropdown(choices=list(groups), value=choice), gr.Slider(maximum=max(len(rows) - 1, 1), value=i),
            image, caption)


def tick(state: AppState, run_id: str, compare: list[str] | None, smoothing: float, sample_choice: str | None):
    """What the timer refreshes: table, compare choices, header, error, log, live plots, and the scrubber while
    it has no samples yet (once it has, it stays where the user scrubbed)."""
    samples = run_samples(state, run_id, None, None) if not sample_choice else (gr.skip(),) * 4
    return (*runs_table(state), *run_status(state, run_id), *run_plots_live(state, run_id, compare, smoothing),
            *samples)


# -- commands ------------------------------------------------------------------------------------------------
def _command(state: AppState, run_id: str, action) -> str:
    try:
        run_id = check_run_id((run_id or "").strip())
        with state.store() as store:
            return action(store, run_id)
    except (StoreError, CheckpointError) as err:
        raise gr.Error(str(err)) from None


def stop_run(state: AppState, run_id: str) -> str:
    return _command(state, run_id, lambda s, i: f"Run {i}: {queue.stop(s, i)} (it saves a checkpoint first).")


def resume_run(state: AppState, run_id: str) -> str:
    return _command(state, run_id, lambda s, i: f"Run {i} {queue.resume(s, i).status} (from its last checkpoint).")


def send(kind: str, state: AppState, run_id: str) -> str:
    def act(store, i):
        store.send_command(i, kind)
        return f"Run {i}: {kind} requested; the worker takes it after its current step."
    return _command(state, run_id, act)


def run_controls(state: AppState, run_id: str) -> list:
    """Stop, Resume, Sample now and Checkpoint now, enabled only where they can act on the run's status (a
    finished run offers none of them; a stopped one only Resume)."""
    status = None
    if run_id and rv.RUN_ID_RE.fullmatch(run_id.strip()):
        with state.store() as store:
            try:
                status = store.get_run(run_id.strip()).status
            except RunNotFound:  # deleted meanwhile: nothing to act on
                status = None
    live = status in ("queued", "running")
    return [gr.Button(interactive=live), gr.Button(interactive=status in ("stopped", "interrupted", "failed")),
            gr.Button(interactive=status == "running"), gr.Button(interactive=status == "running")]


def delete_run(state: AppState, run_id: str):
    def act(store, i):
        store.delete_run(i)
        return f"Run {i} deleted, with its metrics, samples and files."
    return _command(state, run_id, act), gr.Row(visible=False), ""


def listen(w: RunsWidgets, state: AppState, *, demo: gr.Blocks, tabs: gr.Tabs | None = None,
           **_: object) -> None:
    hidden = dict(show_progress="hidden", api_visibility="undocumented")
    read = dict(hidden, concurrency_limit=None)
    plot_in = [w.run_id, w.compare, w.smoothing]
    status_out = [w.header, w.error, w.logs]
    samples_in, samples_out = [w.run_id, w.sample_choice, w.sample_index], [w.sample_choice, w.sample_index,
                                                                            w.sample_image, w.sample_caption]

    controls = [w.buttons[k] for k in ("stop", "resume", "sample", "checkpoint")]

    def then_view(event, named: bool = False):
        """Chain the opened run's views (status, samples, plots) after an event that sets the run id."""
        api = (lambda n: dict(read, api_name=n)) if named else (lambda n: dict(read, api_visibility="private"))
        event.then(partial(run_status, state), w.run_id, status_out, **api("run_status")) \
            .then(partial(run_controls, state), w.run_id, controls, **dict(read, api_visibility="private")) \
            .then(lambda run_id: run_samples(state, run_id, None, None), w.run_id, samples_out,  # newest step
                  **api("run_samples")) \
            .then(partial(run_plots, state), plot_in, w.plots, **api("run_plots"))

    def load(request: gr.Request):  # a plain function: gradio finds the gr.Request hint (not through a partial)
        run_id, message = on_load(state, request)
        asked = bool(request and request.query_params.get("run"))  # ?run=ID: open the Runs tab on that run
        return (run_id, message, gr.Tabs(selected="runs") if asked and tabs is not None else gr.skip(),
                gr.Timer(active=True) if asked else gr.skip())

    def poll_when_open(evt: gr.SelectData):
        return gr.Timer(active=evt.value == "Runs")

    if tabs is not None:  # the timer polls while the Runs tab is open; every open browser tab polled before
        tabs.select(poll_when_open, None, w.timer, api_visibility="private", show_progress="hidden",
                    concurrency_limit=None)
    else:
        w.timer.active = True

    w.timer.tick(partial(tick, state), [*plot_in, w.sample_choice], [w.table, w.compare, *status_out, *w.plots,
                                                                     *samples_out], api_name="runs_tick", **read)
    then_view(w.run_id.submit(partial(open_run, state), w.run_id, w.run_id, api_name="open_run", **hidden), True)
    then_view(demo.load(load, None, [w.run_id, w.message, tabs if tabs is not None else w.message, w.timer],
                        api_name="runs_load", **read)
              .then(partial(runs_table, state), None, [w.table, w.compare], api_name="runs_table", **read))
    then_view(w.table.select(_selected, None, w.run_id, api_visibility="private", show_progress="hidden"))
    gr.on([w.compare.input, w.smoothing.release], partial(run_plots, state), plot_in, w.plots,
          api_visibility="private", show_progress="hidden", concurrency_limit=None)
    gr.on([w.sample_choice.input, w.sample_index.release], partial(run_samples, state), samples_in, samples_out,
          api_visibility="private", show_progress="hidden", concurrency_limit=None)
    for key, fn, name in [("stop", stop_run, "stop_run"), ("resume", resume_run, "resume_run"),
                          ("sample", partial(send, "sample"), "sample_now"),
                          ("checkpoint", partial(send, "checkpoint"), "checkpoint_now")]:
        w.buttons[key].click(partial(fn, state), w.run_id, w.message, api_name=name, show_progress="hidden")
    w.buttons["delete"].click(lambda: gr.Row(visible=True), None, w.confirm_row, api_visibility="private")
    w.buttons["cancel"].click(lambda: gr.Row(visible=False), None, w.confirm_row, api_visibility="private")
    then_view(w.buttons["confirm"].click(partial(delete_run, state), w.run_id, [w.message, w.confirm_row, w.run_id],
                                         api_name="delete_run", show_progress="hidden"))


def _selected(evt: gr.SelectData) -> str:
    """The id (first column) of the clicked table row."""
    return evt.row_value[0] if evt.row_value else gr.skip()
