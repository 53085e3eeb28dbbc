"""LoRA file formats: which one a file or folder is, what it declares (rank, alpha, targets, base), and the
key and metadata conversions between them. The CLI's export, the app's export and the app's LoRA import share it.

Every format holds the same LoRA: per adapted module an A [r, in] and a B [out, r], the update
``(alpha / r) B A``. They differ in key names and in where r and alpha are written:

* ``flowopd``: our adapter folder, ``pytorch_lora_weights.safetensors`` (keys ``<module>.lora_A.weight``) and
  ``adapter.json`` (rank, alpha, targets, base model id);
* ``diffusers``: ``pytorch_lora_weights.safetensors`` with keys ``transformer.<module>.lora_A.weight`` and the
  LoraConfig in the file's metadata ``lora_adapter_metadata``, each field prefixed ``transformer.`` as
  ``StableDiffusion3Pipeline.save_lora_weights`` writes it. Without that metadata diffusers uses alpha = r
  (scale 1): our r 32 / alpha 64 would load at half strength;
* ``comfyui``: one ``.safetensors`` with the diffusers keys plus a ``transformer.<module>.alpha`` scalar per
  module: ComfyUI reads alpha only from those (else scale 1). diffusers refuses a file with ``.alpha`` keys,
  so this is a separate file;
* ``peft``: ``adapter_config.json`` + ``adapter_model.safetensors`` with keys
  ``base_model.model.<module>.lora_A.weight`` (``PeftModel.save_pretrained``; Flow-GRPO's teachers);
* ``fused``: not a LoRA, the transformer with the LoRA folded in (``SD3Transformer2DModel`` folder).

Which base each format suits (:data:`FORMAT_BACKENDS`): ``diffusers`` and ``comfyui`` are files for an SD3
pipeline, so they need an SD3 base; ``flowopd``, ``peft`` and ``fused`` fit any base, the built-in tiny model
included (its transformer is an ``SD3Transformer2DModel`` too, in pixel space).
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from ..config.choices import EXPORT_FORMATS
from ..models.presets import LORA_TARGET_MODULES
from .files import META_NAME, WEIGHTS_NAME
from .layouts import ALPHA, B, LayoutError, parse_key
from .registry import AdapterError

FLOWOPD, DIFFUSERS, COMFYUI, PEFT, FUSED = EXPORT_FORMATS
PEFT_CONFIG, PEFT_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
COMFYUI_NAME = "lora_comfyui.safetensors"
FUSED_WEIGHTS = "diffusion_pytorch_model.safetensors"  # what SD3Transformer2DModel.save_pretrained writes
METADATA_KEY = "lora_adapter_metadata"  # diffusers' key for the LoraConfig in a file's metadata
COMPONENT = "transformer"  # SD3 pipelines prefix the transformer's LoRA keys with it (diffusers, ComfyUI)
BASE_KEY = "flowopd.base_model"  # our own metadata entry: the base model id, for the import's check
PEFT_PREFIX = "base_model.model."

BACKENDS = {"SD3FlowModel": "sd3", "TinyFlowModel": "tiny"}  # model id prefix (FlowModel.model_id) -> backend
FORMAT_BACKENDS: dict[str, tuple[str, ...] | None] = {FLOWOPD: None, PEFT: None, FUSED: None,  # None: any
                                                      DIFFUSERS: ("sd3",), COMFYUI: ("sd3",)}
_BACKEND_NAMES = {"tiny": "the built-in tiny model", "sd3": "an SD3 model"}


class LoraFormatError(AdapterError):
    """A LoRA file or folder that cannot be read, or a format that does not suit the adapter's base."""


@dataclass
class LoraFile:
    """What a LoRA file or folder declares, read from its header and config (no weight is loaded)."""

    path: Path  # the weights file
    format: str  # flowopd | diffusers | comfyui | peft
    rank: int
    alpha: float
    target_modules: list[str]  # declared by the file, else the module names' last parts
    modules: dict[str, tuple[list[int], list[int]]]  # module -> (A shape, B shape), as imported
    base: str | None = None  # the base model the file names, if any
    layout: str = "flowopd"  # the key layout (flowopd.adapters.layouts): diffusers, peft, kohya, native, ...
    # Per-module scales folded into B when ranks or alphas differ by module (or rslora): the import is then a
    # LoRA of the largest rank with alpha = rank (scale 1), A and B zero-padded, B times its module's scale.
    scales: dict[str, float] | None = None


def backend_of(base_model: str | None) -> str | None:
    """The backend of a model id (``"sd3"``, ``"tiny"``), None when it is not one of ours.

    >>> backend_of("SD3FlowModel:caf920b9d6d3551e"), backend_of("stabilityai/stable-diffusion-3.5-medium")
    ('sd3', None)
    """
    return BACKENDS.get(str(base_model or "").split(":", 1)[0])


def check_base(fmt: str, base_model: str | None) -> None:
    """Raise :class:`LoraFormatError` when format ``fmt`` does not suit an adapter of ``base_model``."""
    allowed = FORMAT_BACKENDS.get(fmt)
    backend = backend_of(base_model)
    if allowed is None or backend in allowed:
        return
    fits = [f for f, b in FORMAT_BACKENDS.items() if b is None or backend in b]
    what = _BACKEND_NAMES.get(backend, "a base model this app does not know")
    raise LoraFormatError(f"format {fmt!r} needs an SD3 base model; this adapter was trained on {what} "
                          f"(adapter.json base_model {base_model!r}): use {', '.join(fits[:-1])} or {fits[-1]}")


def read_header(path: Path) -> dict:
    """The JSON header of a safetensors file (names, dtypes, shapes, ``__metadata__``) without its tensors."""
    try:
        with open(path, "rb") as f:
            size = struct.unpack("<Q", f.read(8))[0]
            if size > 100_000_000:
                raise ValueError("header too large")
            return json.loads(f.read(size))
    except (OSError, struct.error, ValueError) as err:
        raise LoraFormatError(f"LoRA file {path} is not a readable safetensors file ({err}): give the "
                              ".safetensors file or its folder") from None


def locate(path: str | Path) -> tuple[Path, str]:
    """The weights file and the format of a LoRA folder or file (comfyui is told from diffusers by its keys)."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise LoraFormatError(f"LoRA path {path} is not a .safetensors file: give the adapter folder or its "
                                  ".safetensors file")
        folder = path.parent
        if path.name == PEFT_WEIGHTS and (folder / PEFT_CONFIG).is_file():
            return path, PEFT
        if path.name == WEIGHTS_NAME and (folder / META_NAME).is_file():
            return path, FLOWOPD
        return path, COMFYUI if any(k.endswith(".alpha") for k in read_header(path)) else DIFFUSERS
    if not path.is_dir():
        raise LoraFormatError(f"LoRA path {path} does not exist: give an adapter folder or a .safetensors file")
    if (path / PEFT_WEIGHTS).is_file() and (path / PEFT_CONFIG).is_file():
        return path / PEFT_WEIGHTS, PEFT
    if (path / WEIGHTS_NAME).is_file():
        return locate(path / WEIGHTS_NAME)
    files = sorted(path.glob("*.safetensors"))
    if len(files) == 1:  # e.g. a comfyui export's folder
        return locate(files[0])
    raise LoraFormatError(f"LoRA folder {path} holds neither {PEFT_WEIGHTS} + {PEFT_CONFIG} (peft) nor {WEIGHTS_NAME} "
                          "(diffusers, or ours with adapter.json) nor a single .safetensors file (comfyui): give a "
                          "LoRA folder of one of these formats, or the .safetensors file")


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise LoraFormatError(f"LoRA config {path} is not valid JSON ({err}): fix or replace it") from None
    if not isinstance(data, dict):
        raise LoraFormatError(f"LoRA config {path} is not a JSON object: fix or replace it")
    return data


def _declared(fmt: str, weights: Path, metadata: dict) -> dict:
    """The file's own description as LoraConfig-style fields: r, lora_alpha, target_modules, base."""
    if fmt == FLOWOPD:
        meta = _json(weights.parent / META_NAME)
        return {"r": meta.get("rank"), "lora_alpha": meta.get("alpha"), "target_modules": meta.get("target_modules"),
                "rank_pattern": meta.get("rank_pattern"), "alpha_pattern": meta.get("alpha_pattern"),
                "base": meta.get("base_model")}
    if fmt == PEFT:
        config = _json(weights.parent / PEFT_CONFIG)
        if config.get("use_dora"):
            raise LoraFormatError(f"LoRA {weights.parent}: {PEFT_CONFIG} sets use_dora: a DoRA cannot be read as a "
                                  "LoRA")
        return {**config, "base": config.get("base_model_name_or_path")}
    base = metadata.get(BASE_KEY)
    if fmt == COMFYUI:
        return {"base": base}  # alphas are per module (read from the .alpha keys)
    try:
        config = json.loads(metadata[METADATA_KEY]) if METADATA_KEY in metadata else {}
    except json.JSONDecodeError as err:
        raise LoraFormatError(f"LoRA file {weights}: its {METADATA_KEY} is not valid JSON ({err})") from None
    # A pipeline's save_lora_weights prefixes each field with the component; a model's save_lora_adapter does not.
    prefix = f"{COMPONENT}."
    if any(k.startswith(prefix) for k in config):
        config = {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}
    return {**config, "base": base}


def describe(path: str | Path, target_names: tuple[str, ...] = ()) -> LoraFile:
    """Detect format, key layout, rank, alpha, target modules and named base of the LoRA at ``path``.

    ``target_names``: the model's LoRA target names (e.g. ``to_out.0``), to name a module's target when the
    file declares none (default: the paper's, :data:`flowopd.models.presets.LORA_TARGET_MODULES`). Reads the
    header, the config and the ``.alpha`` scalars, no weight. Ranks and alphas may differ by module (kohya's
    ``.alpha`` keys, peft's ``rank_pattern`` / ``alpha_pattern``, ``use_rslora``): see :class:`LoraFile`.

    Raises:
        LoraFormatError: not a LoRA of a known format or key layout (text-encoder LoRAs, LyCORIS and DoRA are
            refused with the reason), A and B of different ranks, a rank that contradicts the config.
    """
    weights, fmt = locate(path)
    header = read_header(weights)
    metadata = header.pop("__metadata__", None) or {}
    layouts, shapes, alpha_keys = _parse_header(weights, header)
    ranks = {m: s["lora_A"][0] for m, s in shapes.items()}
    declared = _declared(fmt, weights, metadata)
    scalars = _read_scalars(weights, alpha_keys)
    rank_pattern, alpha_pattern = declared.get("rank_pattern") or {}, declared.get("alpha_pattern") or {}
    for module, r in ranks.items():
        want = _pattern_value(rank_pattern, module, declared.get("r") if not rank_pattern else None)
        if want is not None and int(want) != r:
            raise LoraFormatError(f"LoRA {weights}: its config says r={want} but its weights have rank {r} "
                                  f"({module}): the files do not belong together")
    default_alpha = declared.get("lora_alpha")
    alphas = {m: float(scalars[m]) if m in scalars else
              float(_pattern_value(alpha_pattern, m, default_alpha if default_alpha is not None else r))
              for m, r in ranks.items()}  # diffusers' rule: no alpha is alpha = r (scale 1)
    rslora = bool(declared.get("use_rslora"))
    uniform = len(set(ranks.values())) == 1 and len(set(alphas.values())) == 1 and not rslora
    rank = max(ranks.values())
    if uniform and next(iter(alphas.values())) != 0:
        alpha, scales = next(iter(alphas.values())), None
        modules = {m: (s["lora_A"], s["lora_B"]) for m, s in shapes.items()}
    else:
        alpha = float(rank)
        scales = {m: alphas[m] / (math.sqrt(ranks[m]) if rslora else ranks[m]) for m in ranks}
        modules = {m: ([rank, s["lora_A"][1]], [s["lora_B"][0], rank]) for m, s in shapes.items()}
    targets = declared.get("target_modules")
    if not isinstance(targets, list | tuple) or not targets:  # a regex (peft allows one) or nothing: use the keys
        names = target_names or LORA_TARGET_MODULES
        targets = {next((t for t in names if n == t or n.endswith("." + t)), n.split(".")[-1]) for n in modules}
    return LoraFile(weights, fmt, int(rank), float(alpha), sorted(targets), modules, declared.get("base"),
                    layout="+".join(sorted(layouts)), scales=scales)


def _parse_header(weights: Path, header: dict) -> tuple[set[str], dict[str, dict[str, list[int]]], dict[str, str]]:
    """The layouts, each module's A and B shapes (a fused qkv's B split by rows) and each module's alpha key."""
    shapes: dict[str, dict[str, list[int]]] = {}
    alpha_keys: dict[str, str] = {}
    layouts: set[str] = set()
    for key, entry in header.items():
        try:
            parsed = parse_key(key)
        except LayoutError as err:
            raise LoraFormatError(f"LoRA file {weights}: {err}") from None
        layouts.add(parsed.layout)
        if parsed.part == ALPHA:
            alpha_keys.update(dict.fromkeys(parsed.modules, key))
            continue
        shape = list(entry["shape"])
        if len(shape) != 2:
            raise LoraFormatError(f"LoRA file {weights}: {key} has shape {shape}: only linear layers' LoRAs (2-D A "
                                  "and B) can be read, not a LoCon's convolution")
        if parsed.part == B and len(parsed.modules) > 1:
            if shape[0] % len(parsed.modules):
                raise LoraFormatError(f"LoRA file {weights}: {key} has {shape[0]} rows, not 3 equal q/k/v parts")
            shape = [shape[0] // len(parsed.modules), shape[1]]
        for module in parsed.modules:
            shapes.setdefault(module, {})[parsed.part] = shape
    if not shapes:
        raise LoraFormatError(f"LoRA file {weights} holds no LoRA weights")
    for module, s in shapes.items():
        if set(s) != {"lora_A", "lora_B"}:
            raise LoraFormatError(f"LoRA file {weights}: module {module} has no {'B' if 'lora_A' in s else 'A'} "
                                  "weight: only whole layers (A and B) can be read")
        if s["lora_A"][0] != s["lora_B"][1]:
            raise LoraFormatError(f"LoRA file {weights}: module {module} has A of rank {s['lora_A'][0]} and B of "
                                  f"rank {s['lora_B'][1]}: the file is corrupt")
    if set(alpha_keys) - set(shapes) or (alpha_keys and set(shapes) - set(alpha_keys)):
        raise LoraFormatError(f"LoRA file {weights} has .alpha keys for some layers only: give every layer its alpha")
    return layouts, shapes, alpha_keys


def _pattern_value(pattern: dict, module: str, default):
    """peft's per-module override: the value of the first pattern that ends the module's name."""
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _read_scalars(weights: Path, keys: dict[str, str]) -> dict[str, float]:
    if not keys:
        return {}
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        return {module: float(f.get_tensor(key).float().item()) for module, key in keys.items()}


def read(path: str | Path, target_names: tuple[str, ...] = ()) -> tuple[LoraFile, dict]:
    """:func:`describe` and the weights under our keys ``<module>.lora_A.weight`` / ``<module>.lora_B.weight``
    (a fused qkv split, per-module scales folded in).

    Raises:
        LoraFormatError: as :func:`describe`, or a weight that is not finite.
    """
    import torch
    from safetensors.torch import load_file

    info = describe(path, target_names)
    tensors = {}
    for key, t in load_file(str(info.path)).items():
        parsed = parse_key(key)
        if parsed.part == ALPHA:
            continue
        if not torch.isfinite(t).all():
            raise LoraFormatError(f"LoRA file {info.path}: {key} holds NaN or infinite values: the file is corrupt")
        parts = t.chunk(len(parsed.modules)) if parsed.part == B else [t] * len(parsed.modules)
        for module, part in zip(parsed.modules, parts, strict=True):
            tensors[f"{module}.{parsed.part}.weight"] = part.contiguous()
    if info.scales is not None:
        for module, scale in info.scales.items():
            a, b = tensors[f"{module}.lora_A.weight"], tensors[f"{module}.lora_B.weight"]
            pad = info.rank - a.shape[0]
            tensors[f"{module}.lora_A.weight"] = torch.cat([a, a.new_zeros(pad, a.shape[1])])
            tensors[f"{module}.lora_B.weight"] = torch.cat([b * scale, b.new_zeros(b.shape[0], pad)], dim=1)
    return info, tensors


def lora_config(info: LoraFile) -> dict:
    """The LoraConfig fields that rebuild the LoRA (diffusers' metadata, peft's config, load_lora_adapter)."""
    return {"r": info.rank, "lora_alpha": info.alpha, "target_modules": list(info.target_modules),
            "lora_dropout": 0.0, "bias": "none"}


def convert(info: LoraFile, tensors: dict, fmt: str) -> tuple[dict, dict[str, str]]:
    """Our-keyed ``tensors`` as the tensors and safetensors metadata of file format ``fmt`` (diffusers, comfyui)."""
    import torch

    out = {f"{COMPONENT}.{k}": t for k, t in tensors.items()}
    metadata = {"format": "pt", **({BASE_KEY: info.base} if info.base else {})}
    if fmt == DIFFUSERS:  # packed as StableDiffusion3Pipeline.save_lora_weights packs it
        metadata[METADATA_KEY] = json.dumps({f"{COMPONENT}.{k}": v for k, v in lora_config(info).items()},
                                            indent=2, sort_keys=True)
    elif fmt == COMFYUI:
        others = [m for m in info.modules if not any(m == t or m.endswith("." + t) for t in LORA_TARGET_MODULES)]
        if others:  # the key map checked against ComfyUI's (tests/method/test_lora_formats.py) is attention's
            raise LoraFormatError(f"format {fmt!r} is written for LoRAs of the attention projections, and this "
                                  f"adapter also adapts {others[:2]} (e.g. a full student): export {DIFFUSERS}, "
                                  f"{PEFT} or {FUSED}")
        for module in info.modules:
            out[f"{COMPONENT}.{module}.alpha"] = torch.tensor(float(info.alpha))
    else:
        raise LoraFormatError(f"format {fmt!r} is not a single LoRA file: choose {DIFFUSERS} or {COMFYUI}")
    return out, metadata
