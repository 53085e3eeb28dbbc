"""The Distill tab: teachers by task, routing, loss mode, MAR anchor and weight, cold start and budget (rendered
from ``OPDConfig.describe()`` with the presets); a pre-flight estimate of the time (and, on a GPU, of peak
memory); start a cold start + distillation, or the whole pipeline (teachers -> cold start -> distillation) as
one chain of queued runs; the equivalent CLI and config JSON. Handlers call :mod:`flowopd_studio.services`."""

from __future__ import annotations

import json
from dataclasses import dataclass

import gradio as gr

from flowopd.configs import COLDSTART_MODES, LOSS_MODES, PRESET_NAMES, ROUTINGS, OPDConfig
from flowopd.world.prompts import TASKS

from ..services import base_models, distill, teachers
from ..services.config_forms import DISTILL_OWN, preset_values
from ..services.preflight import model_arch
from .config_form import guarded, settings_form
from .state import AppState

NONE = "(none)"


@dataclass
class DistillWidgets:
    name: gr.Textbox
    teachers: dict  # task -> gr.Dropdown
    train_tasks: gr.CheckboxGroup
    routing: gr.Radio
    loss_mode: gr.Dropdown
    mar_anchor: gr.Dropdown
    beta_mar: gr.Number
    coldstart: gr.Radio
    preset: gr.Radio
    fields: dict  # OPD field -> widget
    refresh: gr.Button
    preflight: gr.Button
    start: gr.Button
    pipeline: gr.Button
    estimate: gr.Markdown
    plan: gr.Code
    cli: gr.Code
    status: gr.Markdown


def render(state: AppState) -> DistillWidgets:
    info = {f.name: f.help for f in OPDConfig.describe()}
    gr.Markdown("### Teachers\nOne teacher per task to distil (from the teachers table); the student learns every "
                "chosen task. For the whole pipeline, tick tasks whose teacher is trained first.")
    with gr.Row():
        name = gr.Textbox(value="student", label="Student name", elem_id="student-name")
        team = {t: gr.Dropdown([NONE], value=NONE, label=f"{t} teacher", allow_custom_value=True) for t in TASKS}
    train_tasks = gr.CheckboxGroup(list(TASKS), label="Whole pipeline: train a new teacher for these tasks first",
                                   info="each a grpo run of the chosen preset, named <student>-<task>")
    gr.Markdown("### Method")
    with gr.Row():
        routing = gr.Radio(list(ROUTINGS), value="per-sample", label="Routing", info=info["routing"])
        loss_mode = gr.Dropdown(list(LOSS_MODES), value="kl", label="Loss mode", info=info["loss_mode"])
        mar_anchor = gr.Dropdown(["base", *TASKS], value="base", label="MAR anchor",
                                 info="base (adapters off) or the teacher of a task")
        beta_mar = gr.Number(value=0.02, minimum=0, label="MAR weight (beta_mar)", info=info["beta_mar"])
    with gr.Row():
        coldstart = gr.Radio(list(COLDSTART_MODES), value="merge", label="Cold start",
                             info="merge: the teachers' exact delta merge; merge-avg: the code's A/B average; sft: "
                                  "fine-tune on teacher samples; none: a fresh LoRA")
        preset = gr.Radio(list(PRESET_NAMES), value="quick", label="Preset (budget)",
                          info="quick: about 3 min of distillation on 2 CPU cores; default: the tiny world's "
                               "values; paper: SD3.5 Medium's")
    fields = settings_form("opd", "quick", DISTILL_OWN)
    with gr.Row():
        refresh = gr.Button("Refresh teachers")
        preflight = gr.Button("Pre-flight")
        start = gr.Button("Start distillation", variant="primary", elem_id="start-distill")
        pipeline = gr.Button("Start whole pipeline", elem_id="start-pipeline")
    status = gr.Markdown()
    estimate = gr.Markdown()
    with gr.Accordion("Config JSON and equivalent commands", open=False):
        plan = gr.Code(language="json", label="Plan (configs of the runs, in order)", buttons=["copy"])
        cli = gr.Code(language="shell", label="Equivalent CLI", buttons=["copy"])
    return DistillWidgets(name, team, train_tasks, routing, loss_mode, mar_anchor, beta_mar, coldstart, preset, fields,
                          refresh, preflight, start, pipeline, estimate, plan, cli, status)


# --- handlers -------------------------------------------------------------------------------------------------------

def teacher_choices(state: AppState) -> list[gr.Dropdown]:
    with state.store() as store:
        by_task = teachers.teachers_by_task(store)
    return [gr.Dropdown(choices=[NONE, *by_task[t]]) for t in TASKS]


def make_plan(state: AppState, order: list[str], pipeline: bool, name: str, *values) -> tuple[str, str, str]:
    """(plan JSON, CLI, pre-flight markdown) of the form; ``pipeline`` includes the ticked teacher tasks."""
    team, rest = values[:len(TASKS)], values[len(TASKS):]
    train, routing, loss_mode, anchor, beta_mar, coldstart, preset_name = rest[:7]
    settings = dict(zip(order, rest[7:]))
    if beta_mar is None or beta_mar < 0:
        raise ValueError("MAR weight (beta_mar) must be a number >= 0: 0.02 is the paper's, 0 turns MAR off")
    choice = distill.DistillChoice(name, {t: v for t, v in zip(TASKS, team) if v and v != NONE},
                                   tuple(train or ()) if pipeline else (), routing, loss_mode, anchor, beta_mar,
                                   coldstart, preset_name, settings)
    with state.store() as store:
        base = base_models.current_base(store, state.model_ref)
        plan = distill.plan(store, choice, base)
        arch = model_arch(state.model) if base.ref == state.model_ref else None
        est = distill.plan_estimate(store, plan, base, arch)
    return distill.configs_json(plan), distill.cli_commands(plan, state.home), est.text(gpu=_gpu())


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def start_plan(state: AppState, plan_json: str) -> str:
    try:
        plan = json.loads(plan_json or "")
        plan = {k: plan[k] for k in ("name", "teachers", "train", "coldstart", "opd")}
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"Plan is not the JSON the Pre-flight button writes ({err}): press Pre-flight first") from None
    with state.store() as store:
        base = base_models.current_base(store, state.model_ref)
        runs = distill.start(store, plan, base)
    chain = " -> ".join(f"{r.name} `{r.id}`" for r in runs)
    return f"Queued {len(runs)} run(s), started one after another: {chain}. Follow them in the Runs tab."


def listen(w: DistillWidgets, state: AppState, *, demo: gr.Blocks, **_: object) -> None:
    order = list(w.fields)
    hidden = dict(api_visibility="undocumented")
    team = list(w.teachers.values())
    form = [w.name, *team, w.train_tasks, w.routing, w.loss_mode, w.mar_anchor, w.beta_mar, w.coldstart, w.preset,
            *w.fields.values()]
    demo.load(lambda: teacher_choices(state), None, team, api_name="distill_teachers", **hidden)
    w.refresh.click(lambda: teacher_choices(state), None, team, api_name="refresh_distill_teachers", **hidden)
    w.preset.change(lambda p: [gr.update(value=preset_values("opd", p, DISTILL_OWN)[f]) for f in order], w.preset,
                    list(w.fields.values()), api_name="distill_preset", **hidden)
    outputs = [w.plan, w.cli, w.estimate]
    w.preflight.click(guarded(lambda *v: make_plan(state, order, True, *v)), form, outputs, api_name="distill_plan",
                      **hidden)
    w.start.click(guarded(lambda *v: make_plan(state, order, False, *v)), form, outputs, api_name="distill_plan_only",
                  **hidden).success(guarded(lambda p: start_plan(state, p)), w.plan, w.status, api_name="start_distill")
    w.pipeline.click(guarded(lambda *v: make_plan(state, order, True, *v)), form, outputs,
                     api_name="pipeline_plan", **hidden
                     ).success(guarded(lambda p: start_plan(state, p)), w.plan, w.status, api_name="start_pipeline")
