"""Import an existing LoRA as a teacher: detect its format, rank, alpha, targets and base, check it against
the app's model, convert it to our adapter folder and register it; its quick evaluation is an ``eval`` run.

Formats read (:mod:`flowopd.adapters.formats`; inspecting reads the safetensors header, the config and the
``.alpha`` scalars, no weight): ``ours`` (our adapter folder, the export format ``flowopd``), ``peft`` (e.g.
Flow-GRPO's teachers), ``diffusers`` (alpha from the file's ``lora_adapter_metadata``, plain or prefixed
``transformer.`` as a pipeline saves it; without it alpha = rank, diffusers' scale 1) and ``comfyui`` (alpha from
the ``.alpha`` keys). Every format ``flowopd export`` writes imports back.

A LoRA that adapts only part of the model's target layers is completed with zero LoRA weights, which change
nothing: Flow-GRPO's SD3.5-M teachers target ``attn.*`` only, while this model's LoRAs also adapt the
dual-attention blocks' ``attn2``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowopd.adapters import META_NAME, WEIGHTS_NAME, formats

from .teachers import check_name, quick_eval

PEFT_CONFIG, PEFT_WEIGHTS = formats.PEFT_CONFIG, formats.PEFT_WEIGHTS
IMPORT_DIR = "teachers"  # imported adapters live in HOME/teachers/<name>/
LABELS = {formats.FLOWOPD: "ours"}  # how the app has always named our own format


class ImportRefused(ValueError):
    """The LoRA cannot become a teacher of this base model (the message says why and what to do)."""


@dataclass
class LoraInfo:
    """What :func:`inspect_lora` found."""

    path: str  # the weights file
    format: str  # ours | peft | diffusers | comfyui
    rank: int
    alpha: float
    target_modules: list[str]
    modules: dict[str, tuple[list[int], list[int]]] = field(repr=False)  # module -> (A shape, B shape)
    base: str | None = None  # the base the file names (ours: model id; peft: base_model_name_or_path)
    problems: list[str] = field(default_factory=list)  # set by check_lora
    zero_filled: list[str] = field(default_factory=list)  # target layers it lacks, completed with zeros (check_lora)

    def summary(self) -> dict:
        d = asdict(self)
        d["modules"] = len(self.modules)
        d["zero_filled"] = len(self.zero_filled)
        return d


def read_header(path: Path) -> dict:
    """The JSON header of a safetensors file (names, dtypes, shapes, ``__metadata__``) without its tensors."""
    try:
        return formats.read_header(path)
    except formats.LoraFormatError as err:
        raise ImportRefused(str(err)) from None


def inspect_lora(path: str | Path, target_names: tuple[str, ...] = ()) -> LoraInfo:
    """Detect format, rank, alpha, target modules and named base of the LoRA at ``path`` (folder or file).

    ``target_names``: the model's LoRA target names (e.g. ``to_out.0``), to name a module's target.

    Raises:
        ImportRefused: not a LoRA of a readable format, kohya-style keys, ranks or alphas that differ by layer.
    """
    try:
        found = formats.describe(Path(str(path).strip()).expanduser(), target_names)
    except formats.LoraFormatError as err:
        raise ImportRefused(str(err)) from None
    return LoraInfo(str(found.path), LABELS.get(found.format, found.format), found.rank, found.alpha,
                    found.target_modules, found.modules, found.base)


def check_lora(info: LoraInfo, model) -> LoraInfo:
    """Record in ``info.problems`` why the LoRA does not fit ``model`` (module names, shapes, targets, base id)."""
    from flowopd.adapters import base_model_id

    layers = dict(model.transformer.named_modules())
    problems = []
    for name, (a, b) in sorted(info.modules.items()):
        layer = layers.get(name)
        if layer is None or not hasattr(layer, "in_features"):
            problems.append(f"module {name} does not exist in the base model's transformer")
        elif a[1] != layer.in_features or b[0] != layer.out_features:
            problems.append(f"module {name} is {layer.in_features} -> {layer.out_features} in the base model, the "
                            f"LoRA expects {a[1]} -> {b[0]}")
        if len(problems) >= 3:
            break
    targets = tuple(model.lora_target_modules)
    expected = {n for n in layers if hasattr(layers[n], "in_features") and any(n == t or n.endswith("." + t)
                for t in targets) and not any(p.startswith("lora_") or p == "base_layer" for p in n.split("."))}
    # Layers beyond the model's LoRA targets (e.g. MLPs) are kept: distillation loads them, and the merge cold
    # start merges on the union of the teachers' layers. Target layers the LoRA lacks are zero-filled.
    missing, extra = sorted(expected - set(info.modules)), sorted(set(info.modules) - expected)
    info.target_modules = sorted(targets) + extra if not problems else info.target_modules
    info.zero_filled = missing if not problems else []
    ours = formats.backend_of(info.base) is not None  # a model id of ours (a hub id cannot be checked exactly)
    if (info.format == "ours" or ours) and info.base != base_model_id(model):
        problems.append(f"it was trained on base model {info.base!r}, this app's model is {base_model_id(model)!r}")
    info.problems = problems
    return info


def convert(info: LoraInfo, model, folder: Path) -> Path:
    """Write the LoRA as our adapter folder (module-name keys, peft metadata with r and alpha, adapter.json); the
    layers of ``info.zero_filled`` get zero A and B."""
    import torch
    from safetensors.torch import save_file

    from flowopd.adapters import base_model_id

    _, out = formats.read(info.path)
    layers = dict(model.transformer.named_modules())
    dtype = next(iter(out.values())).dtype
    for name in info.zero_filled:
        out[f"{name}.lora_A.weight"] = torch.zeros(info.rank, layers[name].in_features, dtype=dtype)
        out[f"{name}.lora_B.weight"] = torch.zeros(layers[name].out_features, info.rank, dtype=dtype)
    peft_meta = {"r": info.rank, "lora_alpha": info.alpha, "target_modules": info.target_modules,
                 "peft_type": "LORA", "bias": "none", "lora_dropout": 0.0, "init_lora_weights": "gaussian"}
    folder.mkdir(parents=True, exist_ok=False)
    save_file(out, str(folder / WEIGHTS_NAME), metadata={"format": "pt",
                                                         "lora_adapter_metadata": json.dumps(peft_meta)})
    (folder / META_NAME).write_text(json.dumps({"name": folder.name, "rank": info.rank, "alpha": info.alpha,
                                                "target_modules": info.target_modules,
                                                "base_model": base_model_id(model), "imported_from": info.path,
                                                "format": info.format, "zero_filled": info.zero_filled}, indent=1))
    return folder


def import_lora(store, model, path: str | Path, name: str, task: str, base_name: str, model_ref: str | None,
                *, eval_limit: int = 8, spawn=None) -> tuple[LoraInfo, str | None]:
    """Inspect, check and convert the LoRA, register it as teacher ``name`` of ``task`` (source ``import``) and
    submit its quick evaluation (the first ``eval_limit`` test prompts of the task); returns (info, eval run id).

    Raises:
        ImportRefused: the LoRA does not fit the model (every problem listed) or cannot be read.
        ValueError: the name is taken or invalid, or the task unknown.
    """
    name = check_name(store, name)
    info = check_lora(inspect_lora(path, tuple(model.lora_target_modules)), model)
    if info.problems:
        raise ImportRefused(f"LoRA {info.path} ({info.format}, r={info.rank}) does not fit this base model: "
                            + "; ".join(info.problems))
    folder = store.home / IMPORT_DIR / name
    if folder.exists():
        raise ValueError(f"Teacher name {name}: the folder {folder} exists already: pick another name")
    convert(info, model, folder)
    try:
        store.add_teacher(name, task, task, store.relative(folder), base_model=base_name, algorithm="import",
                          config={"imported_from": info.path, "format": info.format, "rank": info.rank,
                                  "alpha": info.alpha, "target_modules": info.target_modules,
                                  "zero_filled": len(info.zero_filled)}, source="import")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    run = quick_eval(store, name, model_ref, limit=eval_limit, spawn=spawn)
    return info, run.id
