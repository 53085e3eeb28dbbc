"""The Distill tab: teachers by task, routing, loss mode, MAR anchor and weight, cold start and budget (rendered
from ``OPDConfig.describe()`` with the presets); a pre-flight estimate of the time and of each stage's peak
memory (the memory plan, on an SD3.5 base); start a cold start + distillation, or the whole pipeline (a teacher
per ticked task by its strongest source or one algorithm -> cold start -> distillation) as one chain of queued
runs; a prompt-set upload; the equivalent CLI and config JSON. Handlers call :mod:`flowopd_studio.services`."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from flowopd.config.choices import COLDSTART_MODES, LOSS_MODES, ROUTINGS
from flowopd.config.presets import PRESET_NAMES
from flowopd.methods.opd.config import OPDConfig
from flowopd.world.prompts import TASKS

from ..services import base_models, distill, teachers
from ..services.config_forms import DISTILL_OWN, preset_values
from ..services.preflight import model_arch
from . import prompt_set_upload
from .config_form import guarded, settings_form
from .state import AppState

NONE = "(none)"


@dataclass
class DistillWidgets:
    name: gr.Textbox
    teachers: dict  # task -> gr.Dropdown
    train_tasks: gr.CheckboxGroup
    sources: gr.Dropdown
    routing: gr.Radio
    loss_mode: gr.Dropdown
    mar_anchor: gr.Dropdown
    beta_mar: gr.Number
    coldstart: gr.Radio
    preset: gr.Radio
    fields: dict  # OPD field -> widget
    prompt_upload: prompt_set_upload.PromptSetWidgets
    refresh: gr.Button
    preflight: gr.Button
    start: gr.Button
    pipeline: gr.Button
    estimate: gr.Markdown
    plan: gr.State  # the validated plan (a dict, services.distill.plan), as the last Pre-flight or Start made it
    plan_json: gr.Code  # its configs, shown for copying
    cli: gr.Code
    status: gr.Markdown


def render(state: AppState) -> DistillWidgets:
    info = {f.name: f.help for f in OPDConfig.describe()}
    gr.Markdown("### Teachers\nOne teacher per task to distil (from the teachers table); the student learns every "
                "chosen task. For the whole pipeline, tick tasks whose teacher is trained first.")
    with gr.Row():
        name = gr.Textbox(value="student", label="Student name", elem_id="student-name")
        team = {t: gr.Dropdown([NONE], value=NONE, label=f"{t} teacher", allow_custom_value=True) for t in TASKS}
    with gr.Row():
        train_tasks = gr.CheckboxGroup(list(TASKS), label="Whole pipeline: train a new teacher for these tasks first",
                                       info="each a run of the chosen preset, named <student>-<task>", scale=2)
        sources = gr.Dropdown(list(distill.PIPELINE_SOURCES), value="strongest", label="Pipeline teachers' algorithm",
                              info="strongest: each task's best in the teacher benchmark (NFT compose, SFT on the "
                                   "world's renders text, AWM prefer and quality); or one algorithm for all "
                                   "(grpo: the paper's)", elem_id="pipeline-sources")
    gr.Markdown("### Method")
    with gr.Row():
        routing = gr.Radio(list(ROUTINGS), value="per-sample", label="Routing", info=info["routing"])
        loss_mode = gr.Dropdown(list(LOSS_MODES), value="kl", label="Loss mode", info=info["loss_mode"])
        mar_anchor = gr.Dropdown(["base", *TASKS], value="base", label="MAR anchor",
                                 info="base (adapters off) or the teacher of a task")
        beta_mar = gr.Number(value=0.02, minimum=0, label="MAR weight (beta_mar)", info=info["beta_mar"])
    with gr.Row():
        coldstart = gr.Radio(list(COLDSTART_MODES), value="merge", label="Cold start",
                             info="merge: the teachers' exact delta merge (weighted to text and prefer when the "
                                  "pipeline trains all four tasks from the strongest sources); merge-avg: the "
                                  "code's A/B average; sft: fine-tune on teacher samples; none: a fresh LoRA")
        preset = gr.Radio(list(PRESET_NAMES), value="quick", label="Preset (budget)",
                          info="quick: about 4 min of distillation on 2 CPU cores; default: the tiny world's "
                               "values; paper: SD3.5 Medium's")
    fields = settings_form("opd", "quick", DISTILL_OWN)
    prompt_upload = prompt_set_upload.render("distill")
    with gr.Row():
        refresh = gr.Button("Refresh teachers")
        preflight = gr.Button("Pre-flight")
        start = gr.Button("Start distillation", variant="primary", elem_id="start-distill")
        pipeline = gr.Button("Start whole pipeline", elem_id="start-pipeline")
    status = gr.Markdown()
    estimate = gr.Markdown()
    with gr.Accordion("Config JSON and equivalent commands", open=False):
        plan_json = gr.Code(language="json", label="Plan (configs of the runs, in order)", buttons=["copy"],
                            interactive=False)
        cli = gr.Code(language="shell", label="Equivalent CLI", buttons=["copy"])
    return DistillWidgets(name, team, train_tasks, sources, routing, loss_mode, mar_anchor, beta_mar, coldstart, preset,
                          fields, prompt_upload, refresh, preflight, start, pipeline, estimate, gr.State(None),
                          plan_json, cli, status)


# --- handlers -------------------------------------------------------------------------------------------------------

def teacher_choices(state: AppState) -> list[gr.Dropdown]:
    with state.store() as store:
        by_task = teachers.teachers_by_task(store)
    return [gr.Dropdown(choices=[NONE, *by_task[t]]) for t in TASKS]


def form_choice(w: DistillWidgets, form: dict, pipeline: bool) -> distill.DistillChoice:
    """The Distill form's values (``form``: widget -> value, as Gradio passes a set of inputs) as a choice;
    ``pipeline`` keeps the ticked teacher tasks."""
    beta_mar = form[w.beta_mar]
    if beta_mar is None or beta_mar < 0:
        raise ValueError("MAR weight (beta_mar) must be a number >= 0: 0.02 is the paper's, 0 turns MAR off")
    team = {task: form[widget] for task, widget in w.teachers.items() if form[widget] and form[widget] != NONE}
    return distill.DistillChoice(
        name=form[w.name], teachers=team, train_tasks=tuple(form[w.train_tasks] or ()) if pipeline else (),
        routing=form[w.routing], loss_mode=form[w.loss_mode], mar_anchor=form[w.mar_anchor], beta_mar=beta_mar,
        coldstart=form[w.coldstart], preset=form[w.preset], sources=form[w.sources],
        settings={field: form[widget] for field, widget in w.fields.items()})


def make_plan(state: AppState, choice: distill.DistillChoice) -> tuple[dict, str, str, str]:
    """(the plan, its configs as JSON, the CLI, the pre-flight markdown) of ``choice``."""
    with state.store() as store:
        base = base_models.current_base(store, state.model_ref)
        plan = distill.plan(store, choice, base)
        arch = model_arch(state.model) if base.ref == state.model_ref else None
        est = distill.plan_estimate(store, plan, base, arch)
    return plan, distill.configs_json(plan), distill.cli_commands(plan, state.home), est.text(gpu=_gpu())


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def start_plan(state: AppState, plan: dict | None) -> str:
    if not plan:
        raise ValueError("No plan yet: press Pre-flight (or Start) to build one from the form")
    with state.store() as store:
        base = base_models.current_base(store, state.model_ref)
        runs = distill.start(store, plan, base)
    chain = " -> ".join(f"{r.name} `{r.id}`" for r in runs)
    return f"Queued {len(runs)} run(s), started one after another: {chain}. Follow them in the Runs tab."


def listen(w: DistillWidgets, state: AppState, *, demo: gr.Blocks, **_: object) -> None:
    order = list(w.fields)
    hidden = dict(api_visibility="undocumented")
    team = list(w.teachers.values())
    form = [w.name, *team, w.train_tasks, w.sources, w.routing, w.loss_mode, w.mar_anchor, w.beta_mar, w.coldstart,
            w.preset, *w.fields.values()]
    demo.load(lambda: teacher_choices(state), None, team, api_name="distill_teachers", **hidden)
    w.refresh.click(lambda: teacher_choices(state), None, team, api_name="refresh_distill_teachers", **hidden)
    w.preset.change(lambda p: [gr.update(value=preset_values("opd", p, DISTILL_OWN)[f]) for f in order], w.preset,
                    list(w.fields.values()), api_name="distill_preset", **hidden)
    outputs = [w.plan, w.plan_json, w.cli, w.estimate]

    def planner(pipeline: bool):  # the form's values by widget, read by name in form_choice
        return guarded(lambda *values: make_plan(state, form_choice(w, dict(zip(form, values)), pipeline)))

    def starter(plan: dict | None) -> tuple[str, None]:  # a plan starts once: the next needs a new Pre-flight
        return start_plan(state, plan), None

    prompt_set_upload.listen(w.prompt_upload, state, w.name, [w.fields["prompt_sets"]], "unpack_distill_prompt_set")
    started = [w.status, w.plan]
    w.preflight.click(planner(True), form, outputs, api_name="distill_plan", **hidden)
    w.start.click(planner(False), form, outputs, api_name="distill_plan_only", **hidden
                  ).success(guarded(starter), w.plan, started, api_name="start_distill")
    w.pipeline.click(planner(True), form, outputs, api_name="pipeline_plan", **hidden
                     ).success(guarded(starter), w.plan, started, api_name="start_pipeline")
