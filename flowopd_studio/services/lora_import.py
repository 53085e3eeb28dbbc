"""Import an existing LoRA as a teacher: detect its format, rank, alpha, targets and base, check it against
the app's model, convert it to our adapter folder and register it; its quick evaluation is an ``eval`` run.

Formats read (the safetensors header only, so inspecting a file loads no tensor):

* ``ours``: ``pytorch_lora_weights.safetensors`` + ``adapter.json`` (:func:`flowopd.adapters.save_adapter`);
  keys ``<module>.lora_A.weight``;
* ``peft``: ``adapter_config.json`` + ``adapter_model.safetensors``; keys ``base_model.model.<module>.lora_A.weight``;
* ``diffusers``: ``pytorch_lora_weights.safetensors`` (a folder or the file); keys ``transformer.<module>.lora_A
  .weight``; alpha from the file's ``lora_adapter_metadata`` when present, else alpha = rank (diffusers' scale 1).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowopd.adapters import META_NAME, WEIGHTS_NAME

from .teachers import check_name, quick_eval

PEFT_CONFIG, PEFT_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
IMPORT_DIR = "teachers"  # imported adapters live in HOME/teachers/<name>/
_KEY = re.compile(r"^(?P<prefix>base_model\.model\.|transformer\.)?(?P<module>.+)\.(?P<ab>lora_[AB])"
                  r"(?:\.[^.]+)?\.weight$")


class ImportRefused(ValueError):
    """The LoRA cannot become a teacher of this base model (the message says why and what to do)."""


@dataclass
class LoraInfo:
    """What :func:`inspect_lora` found."""

    path: str  # the weights file
    format: str  # ours | peft | diffusers
    rank: int
    alpha: float
    target_modules: list[str]
    modules: dict[str, tuple[list[int], list[int]]] = field(repr=False)  # module -> (A shape, B shape)
    base: str | None = None  # the base the file names (ours: model id; peft: base_model_name_or_path)
    problems: list[str] = field(default_factory=list)  # set by check_lora

    def summary(self) -> dict:
        d = asdict(self)
        d["modules"] = len(self.modules)
        return d


def read_header(path: Path) -> dict:
    """The JSON header of a safetensors file (names, dtypes, shapes, ``__metadata__``) without its tensors."""
    try:
        with open(path, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            if size > 100_000_000:
                raise ValueError("header too large")
            return json.loads(f.read(size))
    except (OSError, struct.error, ValueError) as err:
        raise ImportRefused(f"LoRA file {path} is not a readable safetensors file ({err}): give the "
                            ".safetensors file or its folder") from None


def _locate(path: Path) -> tuple[Path, str]:
    """The weights file and format of a folder or file."""
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ImportRefused(f"LoRA path {path} is not a .safetensors file: give the adapter folder or its "
                                ".safetensors file")
        folder = path.parent
        if path.name == PEFT_WEIGHTS and (folder / PEFT_CONFIG).is_file():
            return path, "peft"
        return path, "ours" if path.name == WEIGHTS_NAME and (folder / META_NAME).is_file() else "diffusers"
    if not path.is_dir():
        raise ImportRefused(f"LoRA path {path} does not exist: give an adapter folder or a .safetensors file")
    if (path / PEFT_WEIGHTS).is_file() and (path / PEFT_CONFIG).is_file():
        return path / PEFT_WEIGHTS, "peft"
    if (path / WEIGHTS_NAME).is_file():
        return path / WEIGHTS_NAME, "ours" if (path / META_NAME).is_file() else "diffusers"
    raise ImportRefused(f"LoRA folder {path} holds neither {PEFT_WEIGHTS} + {PEFT_CONFIG} (peft) nor {WEIGHTS_NAME} "
                        "(diffusers, or ours with adapter.json): give a LoRA folder of one of these formats")


def inspect_lora(path: str | Path, target_names: tuple[str, ...] = ()) -> LoraInfo:
    """Detect format, rank, alpha, target modules and named base of the LoRA at ``path`` (folder or file).

    ``target_names``: the model's LoRA target names (e.g. ``to_out.0``), to name a module's target.

    Raises:
        ImportRefused: not a LoRA of a readable format, kohya-style keys, or ranks that differ by layer.
    """
    weights, fmt = _locate(Path(str(path).strip()).expanduser())
    header = read_header(weights)
    meta = header.pop("__metadata__", None) or {}
    modules: dict[str, dict[str, list[int]]] = {}
    for key, entry in header.items():
        m = _KEY.match(key)
        if m is None:
            hint = " (kohya/Comfy lora_up/lora_down keys: convert it to diffusers format first)" \
                if "lora_down" in key or "lora_up" in key else ""
            raise ImportRefused(f"LoRA file {weights} has key {key!r}, which is not a LoRA A/B weight{hint}")
        modules.setdefault(m["module"], {})[m["ab"]] = entry["shape"]
    if not modules:
        raise ImportRefused(f"LoRA file {weights} holds no LoRA weights")
    ranks = {shapes.get("lora_A", [0])[0] for shapes in modules.values()}
    if len(ranks) != 1 or any(set(s) != {"lora_A", "lora_B"} for s in modules.values()):
        raise ImportRefused(f"LoRA file {weights} has ranks {sorted(ranks)} by layer or a layer without both A and "
                            "B: only a LoRA of one rank over whole layers can become a teacher")
    rank = ranks.pop()
    config: dict = {}  # the file's own description: rank, alpha, targets, base
    try:
        if fmt == "ours":
            config = json.loads((weights.parent / META_NAME).read_text())
            config = {"lora_alpha": config.get("alpha"), "target_modules": config.get("target_modules"),
                      "base": config.get("base_model")}
        elif fmt == "peft":
            config = json.loads((weights.parent / PEFT_CONFIG).read_text())
            config["base"] = config.get("base_model_name_or_path")
        elif "lora_adapter_metadata" in meta:
            config = json.loads(meta["lora_adapter_metadata"])
    except (json.JSONDecodeError, AttributeError, OSError) as err:
        raise ImportRefused(f"LoRA {weights.parent}: its config is not valid JSON ({err})") from None
    alpha, base = float(config.get("lora_alpha") or rank), config.get("base")
    # The declared targets (a layer may lack one, e.g. the last block's to_add_out), else those of the keys.
    targets = sorted(config.get("target_modules") or
                     {next((t for t in target_names if name == t or name.endswith("." + t)), name.split(".")[-1])
                      for name in modules})
    shapes = {name: (s["lora_A"], s["lora_B"]) for name, s in modules.items()}
    return LoraInfo(str(weights), fmt, int(rank), alpha, targets, shapes, base)


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
    missing, extra = sorted(expected - set(info.modules)), sorted(set(info.modules) - expected)
    if not problems and (missing or extra):
        problems.append(f"it adapts {len(info.modules)} layers ({', '.join(info.target_modules)}), this base "
                        f"model's LoRAs adapt {len(expected)} ({', '.join(sorted(targets))}): "
                        + (f"missing {missing[:3]}" if missing else f"extra {extra[:3]}")
                        + " (distillation loads only LoRAs of the same targets)")
    info.target_modules = sorted(targets) if not problems else info.target_modules
    if info.format == "ours" and info.base != base_model_id(model):
        problems.append(f"it was trained on base model {info.base!r}, this app's model is {base_model_id(model)!r}")
    info.problems = problems
    return info


def convert(info: LoraInfo, model, folder: Path) -> Path:
    """Write the LoRA as our adapter folder (module-name keys, peft metadata with r and alpha, adapter.json)."""
    from safetensors.torch import load_file, save_file

    from flowopd.adapters import base_model_id

    tensors = load_file(info.path)
    out = {f"{m['module']}.{m['ab']}.weight": t.contiguous() for k, t in tensors.items() if (m := _KEY.match(k))}
    peft_meta = {"r": info.rank, "lora_alpha": info.alpha, "target_modules": info.target_modules,
                 "peft_type": "LORA", "bias": "none", "lora_dropout": 0.0, "init_lora_weights": "gaussian"}
    folder.mkdir(parents=True, exist_ok=False)
    save_file(out, str(folder / WEIGHTS_NAME), metadata={"format": "pt",
                                                         "lora_adapter_metadata": json.dumps(peft_meta)})
    (folder / META_NAME).write_text(json.dumps({"name": folder.name, "rank": info.rank, "alpha": info.alpha,
                                                "target_modules": info.target_modules,
                                                "base_model": base_model_id(model),
                                                "imported_from": info.path, "format": info.format}, indent=1))
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
                                  "alpha": info.alpha, "target_modules": info.target_modules}, source="import")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    run = quick_eval(store, name, model_ref, limit=eval_limit, spawn=spawn)
    return info, run.id
