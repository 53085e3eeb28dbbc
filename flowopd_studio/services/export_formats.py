"""The export formats of :func:`flowopd_studio.services.export.export_adapter`: how each is written, loaded back
for the verification and used, over the library's :mod:`flowopd.adapters.formats` and :mod:`flowopd.adapters.export`.

``diffusers`` and ``comfyui`` need an SD3 base (they are files for an SD3 pipeline); ``flowopd``, ``peft`` and
``fused`` fit any base, the built-in tiny model included. A format that does not fit the adapter's base is
refused before anything is written, naming the formats that do.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from flowopd.adapters import META_NAME, WEIGHTS_NAME, drop_adapter, formats, load_adapter, use_adapter
from flowopd.adapters import export as lora_export
from flowopd.models.base import FlowModel

VERIFY_NAME = "studio_export_check"


@dataclass(frozen=True)
class ExportFormat:
    """``write(adapter_folder, target_folder, model)`` writes the format (``model``: the base model, or None when
    the export is not verified); ``load(model, target_folder)`` is a context in which the model draws with what
    was written (for the verification); ``usage``: the model card's lines on how to use it."""

    write: Callable[[Path, Path, FlowModel | None], None]
    load: Callable[[FlowModel, Path], AbstractContextManager]
    help: str
    usage: str = ""
    merged: bool = False  # the LoRA is folded into the base: verified against the source folded the same way


def as_adapter(loader: Callable[[FlowModel, Path, str], object]) -> Callable[[FlowModel, Path], AbstractContextManager]:
    """A ``load`` from a loader that adds the export as a named adapter (the context runs that adapter)."""

    @contextmanager
    def load(model: FlowModel, folder: Path) -> Iterator[None]:
        drop_adapter(model, VERIFY_NAME)
        try:
            loader(model, folder, VERIFY_NAME)
            with use_adapter(model, VERIFY_NAME):
                yield
        finally:
            drop_adapter(model, VERIFY_NAME)

    return load


def _write_flowopd(adapter: Path, target: Path, model: FlowModel | None = None) -> None:
    target.mkdir(parents=True)
    for name in (WEIGHTS_NAME, META_NAME):
        shutil.copy2(adapter / name, target / name)


def _write_fused(adapter: Path, target: Path, model: FlowModel | None) -> None:
    if model is None:
        raise ValueError("format 'fused' folds the LoRA into the base model's weights: give the base model "
                         "(the CLI's --model, the app's served model)")
    lora_export.write_fused(model, adapter, target)


FORMATS: dict[str, ExportFormat] = {
    "flowopd": ExportFormat(_write_flowopd, as_adapter(load_adapter),
                            "our adapter folder (flowopd.adapters.save_adapter: LoRA weights in safetensors and "
                            "adapter.json)",
                            'from flowopd.adapters import load_adapter\nload_adapter(model, "flowopd", "student")'),
    "diffusers": ExportFormat(lambda a, t, m: lora_export.write_lora_file(a, "diffusers", t),
                              as_adapter(lora_export.load_with_pipeline),
                              "SD3 bases: pytorch_lora_weights.safetensors, rank and alpha in its "
                              "metadata, for StableDiffusion3Pipeline.load_lora_weights",
                              'pipe = StableDiffusion3Pipeline.from_pretrained(BASE)\npipe.load_lora_weights('
                              '"diffusers", weight_name="pytorch_lora_weights.safetensors")'),
    "comfyui": ExportFormat(lambda a, t, m: lora_export.write_lora_file(a, "comfyui", t),
                            as_adapter(lora_export.load_lora_file),
                            "SD3 bases: one safetensors file with per-layer .alpha, for ComfyUI's "
                            "LoRA loader at strength 1.0",
                            f"# copy comfyui/{formats.COMFYUI_NAME} to ComfyUI/models/loras/ and load it with "
                            "LoraLoaderModelOnly, strength 1.0"),
    "peft": ExportFormat(lambda a, t, m: lora_export.write_peft(a, t), as_adapter(lora_export.load_lora_file),
                         "a peft adapter folder (adapter_config.json + adapter_model.safetensors, as Flow-GRPO's "
                         "teachers), for PeftModel.from_pretrained",
                         'from peft import PeftModel\n'
                         'transformer = PeftModel.from_pretrained(pipe.transformer, "peft")'),
    "fused": ExportFormat(_write_fused, lora_export.fused_transformer,
                          "the transformer with the LoRA folded in, a diffusers model folder, for "
                          "SD3Transformer2DModel.from_pretrained",
                          'transformer = SD3Transformer2DModel.from_pretrained("fused")\n'
                          "pipe = StableDiffusion3Pipeline.from_pretrained(BASE, transformer=transformer)",
                          merged=True),
}
