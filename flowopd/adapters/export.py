"""Writing an adapter folder in another format (:mod:`.formats`), and loading each format back onto a model.

Writers take our adapter folder (:func:`flowopd.adapters.save_adapter`) and a new target folder; only
:func:`write_fused` needs the base model, to fold the LoRA into its weights. Loaders put a written format
back onto the model, the way the export's verification and the LoRA import need it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..models.base import FlowModel
from . import formats
from .files import load_adapter
from .formats import DIFFUSERS, FLOWOPD, FUSED, PEFT, LoraFormatError, check_base, lora_config, read
from .lora import drop_adapter, quiet_peft
from .merge import merged_adapter
from .registry import adapter_names, adapter_parameters, lora_layers
from .switching import active_state, lora_grad_flags, restore_state

_FUSE_NAME = "flowopd_fuse"  # the temporary adapter write_fused folds in


def _our_adapter(adapter: Path, fmt: str) -> tuple:
    info, tensors = read(adapter)
    if info.format != FLOWOPD:
        raise LoraFormatError(f"{adapter} is a {info.format} LoRA, not our adapter folder: import it first")
    check_base(fmt, info.base)
    return info, tensors


def write_lora_file(adapter: str | Path, fmt: str, target: str | Path) -> Path:
    """Write ``adapter`` as a single-file format (``diffusers`` or ``comfyui``) into the new folder ``target``;
    returns the file."""
    from safetensors.torch import save_file

    info, tensors = _our_adapter(Path(adapter), fmt)
    out, metadata = formats.convert(info, tensors, fmt)
    target = Path(target)
    target.mkdir(parents=True)
    path = target / (formats.WEIGHTS_NAME if fmt == DIFFUSERS else formats.COMFYUI_NAME)
    save_file(out, str(path), metadata=metadata)
    return path


def write_peft(adapter: str | Path, target: str | Path) -> Path:
    """Write ``adapter`` as a peft adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``), the
    folder ``PeftModel.from_pretrained(transformer, target)`` loads; ``base_model_name_or_path`` is our base id."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    info, tensors = _our_adapter(Path(adapter), PEFT)
    target = Path(target)
    target.mkdir(parents=True)
    LoraConfig(**lora_config(info), base_model_name_or_path=info.base).save_pretrained(str(target))
    save_file({formats.PEFT_PREFIX + k: t for k, t in tensors.items()}, str(target / formats.PEFT_WEIGHTS),
              metadata={"format": "pt"})
    return target


def _base_state(transformer) -> dict:
    """The transformer's state dict without LoRA tensors, under the names of a transformer without peft."""
    return {k.replace(".base_layer.", "."): v.detach().contiguous() for k, v in transformer.state_dict().items()
            if not any(part.startswith("lora_") for part in k.split("."))}


def write_fused(model: FlowModel, adapter: str | Path, target: str | Path) -> Path:
    """Write ``model``'s transformer with ``adapter`` folded in as a diffusers model folder (``config.json`` and
    ``diffusion_pytorch_model.safetensors``, what ``save_pretrained`` writes); ``SD3Transformer2DModel
    .from_pretrained(target)`` loads it. The weights are ``W0 + (alpha / r) B A`` in the model's dtype."""
    from safetensors.torch import save_file

    _our_adapter(Path(adapter), FUSED)
    target = Path(target)
    drop_adapter(model, _FUSE_NAME)
    load_adapter(model, adapter, _FUSE_NAME)  # refuses an adapter of another base
    try:
        with merged_adapter(model, _FUSE_NAME):
            state = _base_state(model.transformer)
            target.mkdir(parents=True)
            model.transformer.save_config(str(target))
            save_file(state, str(target / formats.FUSED_WEIGHTS), metadata={"format": "pt"})
    finally:
        drop_adapter(model, _FUSE_NAME)
    return target


def _check_all_loaded(model: FlowModel, name: str, modules: dict, where: Path) -> None:
    loaded = {n for n, layer in lora_layers(model).items() if name in layer.lora_A}
    if loaded != set(modules):
        unmatched = sorted(set(modules) - loaded)[:3] or sorted(loaded - set(modules))[:3]
        drop_adapter(model, name)
        raise LoraFormatError(f"LoRA {where} does not match the model's layers (e.g. {unmatched}): load it onto the "
                              "base model it was trained on")


def load_lora_file(model: FlowModel, path: str | Path, name: str) -> dict:
    """Load a LoRA of any format (flowopd, diffusers, comfyui, peft; folder or file) as adapter ``name``
    (frozen, inactive), with its own rank, alpha and targets; returns its LoraConfig fields.

    Raises:
        LoraFormatError: unreadable, or a module of the file that the model lacks (no key is left unmatched).
        AdapterError: the name is taken.
    """
    info, tensors = read(path, tuple(model.lora_target_modules))
    if name in adapter_names(model):
        raise LoraFormatError(f"adapter {name!r} already exists on the model: load under another name")
    config = lora_config(info)
    previous, flags = active_state(model), lora_grad_flags(model)
    with quiet_peft(name):
        model.transformer.load_lora_adapter(tensors, adapter_name=name, prefix=None, metadata=config)
    restore_state(model, previous, flags)
    _check_all_loaded(model, name, info.modules, info.path)
    for p in adapter_parameters(model, name).values():
        p.requires_grad_(False)
    return config


def load_with_pipeline(model: FlowModel, folder: str | Path, name: str) -> dict:
    """Load a ``diffusers`` export with diffusers' own ``StableDiffusion3Pipeline.load_lora_weights`` onto an SD3
    model as adapter ``name`` (frozen, inactive); returns the LoraConfig diffusers rebuilt from the metadata."""
    pipe = getattr(model, "pipe", None)
    if pipe is None or not hasattr(pipe, "load_lora_weights"):
        raise LoraFormatError(f"format {DIFFUSERS!r} loads into an SD3 pipeline, and this model has none: use "
                              f"{FLOWOPD} or {PEFT}")
    if name in adapter_names(model):
        raise LoraFormatError(f"adapter {name!r} already exists on the model: load under another name")
    info, _ = read(folder)
    previous, flags = active_state(model), lora_grad_flags(model)
    with quiet_peft(name):
        pipe.load_lora_weights(str(folder), weight_name=info.path.name, adapter_name=name)
    restore_state(model, previous, flags)
    _check_all_loaded(model, name, info.modules, info.path)
    for p in adapter_parameters(model, name).values():
        p.requires_grad_(False)
    return model.transformer.peft_config[name].to_dict()


@contextmanager
def fused_transformer(model: FlowModel, folder: str | Path) -> Iterator[None]:
    """Run ``model`` with the ``fused`` export in ``folder`` (loaded by ``SD3Transformer2DModel.from_pretrained``)
    in place of its transformer; the model's own transformer is back on exit."""
    from diffusers import SD3Transformer2DModel

    loaded, loading = SD3Transformer2DModel.from_pretrained(str(folder), torch_dtype=model.dtype,
                                                            output_loading_info=True)
    problems = {k: v for k, v in loading.items() if v}
    if problems:
        raise LoraFormatError(f"fused transformer {folder} does not load cleanly ({json.dumps(problems)[:300]})")
    original = model.transformer
    model.transformer = loaded.to(model.device).eval().requires_grad_(False)
    try:
        yield
    finally:
        model.transformer = original


__all__ = ["fused_transformer", "load_lora_file", "load_with_pipeline", "write_fused", "write_lora_file", "write_peft"]
