"""The Models & teachers tab: pick the base model of new runs, define a teacher (settings rendered from its
algorithm's config, presets quick / default / paper) and start its run, import a LoRA as a teacher, and the
teachers table of the store. Handlers call :mod:`flowopd_studio.services`; nothing trains here (a teacher is
a queued run, an imported LoRA's evaluation an ``eval`` run)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import gradio as gr

from flowopd.config.presets import PRESET_NAMES
from flowopd.reward_names import REWARD_NAMES, SD35_TASK_REWARDS, reward_problem
from flowopd.world.prompts import TASKS

from ..services import base_models, lora_import, teachers, uploads
from ..services.config_forms import TEACHER_OWN, build_config, parse_weights, preset_values, teacher_algorithms
from ..services.distill import teacher_cli
from . import prompt_set_upload
from .config_form import guarded, settings_form
from .state import AppState

COLUMNS = ["name", "task", "algorithm", "guidance", "source", "status", "score", "scores", "eval", "base", "run"]


@dataclass
class ModelsWidgets:
    base_kind: gr.Radio
    base_path: gr.Textbox
    base_button: gr.Button
    base_info: gr.Markdown
    name: gr.Textbox
    task: gr.Dropdown
    rewards: gr.Textbox
    prompts: gr.Textbox
    algorithm: gr.Dropdown
    preset: gr.Radio
    forms: dict  # algorithm -> (gr.Group, {field: widget})
    start: gr.Button
    request: gr.Code
    cli: gr.Code
    status: gr.Markdown
    imp_path: gr.Textbox
    imp_name: gr.Textbox
    imp_task: gr.Dropdown
    inspect: gr.Button
    do_import: gr.Button
    imp_info: gr.Markdown
    imp_file: gr.File
    imp_upload: gr.Button
    set_file: gr.File
    set_unpack: gr.Button
    set_info: gr.Markdown
    prompt_upload: prompt_set_upload.PromptSetWidgets
    table: gr.Dataframe
    refresh: gr.Button
    eval_name: gr.Dropdown
    evaluate: gr.Button
    remove: gr.Button


def render(state: AppState) -> ModelsWidgets:
    algorithms = teacher_algorithms()
    gr.Markdown("### Base model of new runs\nThe app generates with the model it was launched with; runs started "
                "here and in Distill train on the base chosen here (checked, not loaded).")
    with gr.Row():
        kind, path = base_models.kind_of(base_models.app_base(state.model_ref))  # then the chosen base, on load
        base_kind = gr.Radio(list(base_models.KINDS), value=kind, label="Base model kind", elem_id="base-kind")
        base_path = gr.Textbox(value=path, label="Base model path", info="tiny folder, SD3/SD3.5 pipeline folder, or "
                               "owner/name of a Hub model already in the local cache; empty for the built-in tiny "
                               "model")
        base_button = gr.Button("Use this base")
    base_info = gr.Markdown()
    gr.Markdown("### Define a teacher")
    with gr.Row():
        name = gr.Textbox(label="Teacher name", placeholder="e.g. text-quick", elem_id="teacher-name")
        task = gr.Dropdown(list(TASKS), value="text", label="Task", info="the task this teacher serves")
        rewards = gr.Textbox(value=task_rewards(state, "text"), label="Reward(s)",
                             info=f"name=weight, comma separated; several = GRPO-Mix ({', '.join(REWARD_NAMES)})")
        prompts = gr.Textbox(value="text=1", label="Prompt set (task weights)",
                             info=f"task=weight of its train prompts ({', '.join(TASKS)})")
    with gr.Row():
        algorithm = gr.Dropdown(algorithms, value=algorithms[0], label="Algorithm",
                                info="teacher algorithms with a registered config and worker stage")
        preset = gr.Radio(list(PRESET_NAMES), value="quick", label="Preset",
                          info="quick: about 2 min per teacher on 2 CPU cores; default: the tiny world's tuned "
                               "values; paper: the paper's SD3.5 Medium settings")
    forms = {}
    for algo in algorithms:
        with gr.Group(visible=algo == algorithms[0]) as group:
            forms[algo] = (group, settings_form(algo, "quick", TEACHER_OWN))
    with gr.Accordion("An SFT teacher from your own images (upload a zip)", open=False):
        gr.Markdown("A zip of images with same-name .txt captions or a metadata.jsonl (as `flowopd train sft --data` "
                    f"reads a folder); up to {uploads.ZIP_MAX_BYTES // 1024 ** 2} MiB and {uploads.ZIP_MAX_FILES} "
                    "files. Unpacking checks the set and puts its folder in the sft settings' `data`; then choose "
                    "the sft algorithm and start the teacher.")
        with gr.Row():
            set_file = gr.File(label="Image set (.zip)", file_types=[".zip"], type="filepath", elem_id="set-upload")
            set_unpack = gr.Button("Unpack as the sft data", elem_id="set-unpack")
        set_info = gr.Markdown(elem_id="set-info")
    prompt_upload = prompt_set_upload.render("teacher")
    start = gr.Button("Start teacher", variant="primary", elem_id="start-teacher")
    status = gr.Markdown()
    with gr.Accordion("Config JSON and equivalent command", open=False):
        request = gr.Code(language="json", label="Teacher request (config JSON)", buttons=["copy"])
        cli = gr.Code(language="shell", label="Equivalent CLI", buttons=["copy"])
    gr.Markdown("### Import a LoRA as a teacher\nA peft folder (adapter_config.json + adapter_model.safetensors), a "
                "diffusers, ComfyUI, kohya or OneTrainer .safetensors, or our adapter folder; checked against the "
                "app's model, then evaluated on the first test prompts of its task (an eval run).")
    with gr.Row():
        imp_path = gr.Textbox(label="LoRA path", info="folder or .safetensors file on this machine")
        imp_name = gr.Textbox(label="Teacher name (import)")
        imp_task = gr.Dropdown(list(TASKS), value="text", label="Task (import)")
    with gr.Row():
        inspect = gr.Button("Inspect")
        do_import = gr.Button("Import", variant="primary")
    with gr.Row():
        imp_file = gr.File(label=f"...or upload a .safetensors LoRA (up to {uploads.LORA_MAX_BYTES // 1024 ** 3} GiB)",
                           file_types=[".safetensors"], type="filepath", elem_id="lora-upload")
        imp_upload = gr.Button("Import the upload", elem_id="import-upload")
    imp_info = gr.Markdown(elem_id="import-info")
    gr.Markdown("### Teachers")
    table = gr.Dataframe(headers=COLUMNS, interactive=False, label="Teachers in the store")
    with gr.Row():
        refresh = gr.Button("Refresh")
        eval_name = gr.Dropdown([], label="Teacher (to evaluate or remove)", allow_custom_value=True)
        evaluate = gr.Button("Quick evaluation")
        remove = gr.Button("Remove from the teachers", variant="stop")
    return ModelsWidgets(base_kind, base_path, base_button, base_info, name, task, rewards, prompts, algorithm, preset,
                         forms, start, request, cli, status, imp_path, imp_name, imp_task, inspect, do_import, imp_info,
                         imp_file, imp_upload, set_file, set_unpack, set_info, prompt_upload,
                         table, refresh, eval_name, evaluate, remove)


# --- handlers (plain functions of the state and the form's values) -----------------------------------------------

def base_text(state: AppState) -> str:
    with state.store() as store:
        base = base_models.current_base(store, state.model_ref)
    return f"New runs train on **{base.name}** ({base.backend}, `{base.path}`)."


def choose_base(state: AppState, kind: str, path: str) -> str:
    with state.store() as store:
        base_models.choose_base(store, kind, path)
    return base_text(state)


def teacher_table(state: AppState) -> tuple[list[list], gr.Dropdown]:
    with state.store() as store:
        rows = teachers.list_teachers(store)
    return [[r[c] for c in COLUMNS] for r in rows], gr.Dropdown(choices=[r["name"] for r in rows])


def teacher_request(state: AppState, order: list[tuple[str, str]], name: str, task: str, rewards: str, prompts: str,
                    algorithm: str, *values) -> tuple[str, str]:
    """The validated request (config JSON) and the equivalent CLI, from the form."""
    with state.store() as store:
        name, task = teachers.check_name(store, name), teachers.check_task(task)
        base = base_models.current_base(store, state.model_ref)
    from flowopd.config.base import config_class

    own = {f.name for f in config_class(algorithm).describe()}  # an SFT teacher has no rewards or prompt set
    fixed = {"model": base.ref}
    if "rewards" in own:
        fixed["rewards"] = parse_weights(rewards, "Reward(s)", REWARD_NAMES,
                                         accepts=lambda name: reward_problem(name, REWARD_NAMES) is None)
    if "prompt_tasks" in own:
        fixed["prompt_tasks"] = parse_weights(prompts, "Prompt set", TASKS)
    settings = {field: v for (algo, field), v in zip(order, values) if algo == algorithm}
    config = build_config(algorithm, settings, fixed, "Teacher settings")
    request = teachers.TeacherRequest(name, task, algorithm, config)
    return request.to_json(), teacher_cli(request, state.home)


def task_rewards(state: AppState, task: str) -> str:
    """The reward a new teacher of ``task`` defaults to: the tiny world's on a tiny base, the real-image one
    (``ocr``, ``pickscore``, ``geneval``/``deqa`` servers) when new runs train on an SD3 base."""
    with state.store() as store:
        backend = base_models.current_base(store, state.model_ref).backend
    return f"{SD35_TASK_REWARDS[task] if backend == 'sd3' else task}=1"


def base_selector(state: AppState) -> tuple[str, str]:
    """The selector's kind and path: the base new runs train on (the chosen one, else the app's model)."""
    with state.store() as store:
        return base_models.kind_of(base_models.current_base(store, state.model_ref))


def start_teacher(state: AppState, request_json: str):
    request = teachers.TeacherRequest.from_json(request_json)
    with state.store() as store:
        base = base_models.current_base(store, state.model_ref)
        run = teachers.define_teacher(store, request, base)
    return f"Teacher **{request.name}** queued as run `{run.id}` ({run.status}); follow it in the Runs tab."


def inspect_lora(state: AppState, path: str) -> str:
    info = lora_import.check_lora(lora_import.inspect_lora(path, tuple(state.model.lora_target_modules)), state.model)
    verdict = "fits the app's model" if not info.problems else "**does not fit**: " + "; ".join(info.problems)
    return (f"`{info.path}`: format **{info.format}**, rank {info.rank}, alpha {info.alpha:g}, "
            f"{len(info.modules)} layers ({', '.join(info.target_modules)}), base named: {info.base or 'none'}; "
            f"{verdict}.")


def import_lora(state: AppState, path: str, name: str, task: str):
    with state.store() as store:
        base = base_models.current_base(store, state.model_ref)
        if base.ref != state.model_ref:  # checking against another base would mean loading it inside an event
            raise ValueError(f"LoRA path: imports are checked against the model this app serves "
                             f"({state.model_name}), but new runs train on {base.name}: choose the app's model as "
                             f"the base, or launch the app with --model {base.ref or 'the built-in model'} to import "
                             "LoRAs for it")
        base_models.ensure_registered(store, base)
        info, run_id = lora_import.import_lora(store, state.model, path, name, teachers.check_task(task), base.name,
                                               state.model_ref)
    return (f"Imported **{name.strip()}** ({info.format}, r={info.rank}, alpha {info.alpha:g}); its quick evaluation "
            f"is run `{run_id}`.")


def import_upload(state: AppState, upload: str | None, name: str, task: str):
    """Import an uploaded .safetensors LoRA: the upload's caps, then the path import's checks."""
    if not upload:
        raise ValueError("LoRA upload: no file uploaded: drop a .safetensors file on the upload box first")
    return import_lora(state, str(uploads.check_lora_upload(upload)), name, task)


def unpack_image_set(state: AppState, upload: str | None, name: str):
    """Unpack an uploaded image-set zip into the data folder, check it as ``train sft --data`` would, and put
    its folder in the sft form's ``data``; returns (data value, message)."""
    from flowopd.datasets import load_image_set

    if not upload:
        raise ValueError("Image set upload: no file uploaded: drop a .zip on the upload box first")
    dest = uploads.new_upload_folder(state.data_folder, "image-sets", name, upload)
    folder = uploads.unpack_image_set(upload, dest)
    try:
        data = load_image_set(folder, state.model.image_size)
    except ValueError as err:
        shutil.rmtree(dest, ignore_errors=True)
        raise ValueError(f"Image set upload: {err}") from None
    return str(folder), (f"Unpacked **{len(data.captions)}** images with captions ({data.source}) into `{folder}`: "
                         "it is now the sft settings' data. Choose the sft algorithm and start the teacher.")


def remove_teacher(state: AppState, name: str):
    """Unregister a teacher: its adapter and runs stay (a run can then be deleted in Runs)."""
    name = (name or "").strip()
    with state.store() as store:
        if not name or not store.remove_teacher(name):
            raise ValueError(f"Teacher {name!r} is not in the teachers table: pick one from the list")
    return f"Teacher **{name}** removed from the teachers table (its adapter and runs are kept)."


def evaluate_teacher(state: AppState, name: str) -> str:
    with state.store() as store:
        run = teachers.quick_eval(store, name, state.model_ref)
    return f"Quick evaluation of **{name}** queued as run `{run.id}`."


def preset_fill(algorithm: str, preset: str, forms: dict) -> list:
    out = []
    for algo, (_, widgets) in forms.items():
        values = preset_values(algo, preset, TEACHER_OWN) if algo == algorithm else {}
        out += [gr.update(value=values[f]) if f in values else gr.update() for f in widgets]
    return out


def listen(w: ModelsWidgets, state: AppState, *, demo: gr.Blocks, **_: object) -> None:
    order = [(algo, f) for algo, (_, widgets) in w.forms.items() for f in widgets]
    fields = [widget for _, widgets in w.forms.values() for widget in widgets.values()]
    hidden = dict(api_visibility="undocumented")
    listing = [w.table, w.eval_name]

    def table():
        return teacher_table(state)

    w.base_button.click(guarded(lambda k, p: choose_base(state, k, p)), [w.base_kind, w.base_path], w.base_info,
                        api_name="choose_base")
    demo.load(lambda: base_text(state), None, w.base_info, api_name="current_base", **hidden)
    demo.load(lambda: base_selector(state), None, [w.base_kind, w.base_path], api_visibility="private")
    demo.load(lambda: teacher_table(state), None, [w.table, w.eval_name], api_name="list_teachers", **hidden)
    w.refresh.click(lambda: teacher_table(state), None, [w.table, w.eval_name], api_name="refresh_teachers", **hidden)
    w.task.change(lambda t: (task_rewards(state, t), f"{t}=1"), w.task, [w.rewards, w.prompts],
                  api_name="teacher_task", **hidden)
    w.algorithm.change(lambda a: [gr.Group(visible=algo == a) for algo in w.forms], w.algorithm,
                       [g for g, _ in w.forms.values()], api_name="teacher_algorithm", **hidden)
    w.preset.change(lambda a, p: preset_fill(a, p, w.forms), [w.algorithm, w.preset], fields,
                    api_name="teacher_preset", **hidden)
    w.start.click(guarded(lambda *v: teacher_request(state, order, *v)),
                  [w.name, w.task, w.rewards, w.prompts, w.algorithm, *fields], [w.request, w.cli],
                  api_name="teacher_config", **hidden
                  ).success(guarded(lambda r: start_teacher(state, r)), w.request, w.status, api_name="start_teacher"
                            ).then(table, None, listing, **hidden)
    w.inspect.click(guarded(lambda p: inspect_lora(state, p)), w.imp_path, w.imp_info, api_name="inspect_lora")
    # An action that can be refused writes only its message: a refusal then marks that message, never the table,
    # which is read again afterwards whatever happened.
    w.do_import.click(guarded(lambda p, n, t: import_lora(state, p, n, t)), [w.imp_path, w.imp_name, w.imp_task],
                      w.imp_info, api_name="import_lora").then(table, None, listing, **hidden)
    w.imp_upload.click(guarded(lambda f, n, t: import_upload(state, f, n, t)), [w.imp_file, w.imp_name, w.imp_task],
                       w.imp_info, api_name="import_lora_upload").then(table, None, listing, **hidden)
    if "sft" in w.forms:  # the unpacked folder becomes the sft form's data
        w.set_unpack.click(guarded(lambda f, n: unpack_image_set(state, f, n)), [w.set_file, w.name],
                           [w.forms["sft"][1]["data"], w.set_info], api_name="unpack_image_set")
    targets = [widgets["prompt_sets"] for _, widgets in w.forms.values() if "prompt_sets" in widgets]
    prompt_set_upload.listen(w.prompt_upload, state, w.name, targets, "unpack_teacher_prompt_set")
    w.evaluate.click(guarded(lambda n: evaluate_teacher(state, n)), w.eval_name, w.status, api_name="evaluate_teacher")
    w.remove.click(guarded(lambda n: remove_teacher(state, n)), w.eval_name, w.status,
                   api_name="remove_teacher").then(table, None, listing, **hidden)

