"""``flowopd export``: an adapter folder as LoRA files for other tools, through the app's own export
(:func:`flowopd_studio.services.export.export_adapter`, the Export tab's call): written, loaded back onto the
base model and checked image for image, then zipped with a model card.

:func:`register` adds the command to the ``flowopd`` parser; building it imports nothing heavy.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from flowopd.config.choices import EXPORT_FORMATS

HELP = "Export an adapter as LoRA files for diffusers, ComfyUI, peft or a fused transformer, verified."
EXAMPLE = ("flowopd export runs/opd/adapter --format diffusers --format comfyui --model PATH --out exports/\n"
           "(the adapter of a run on the built-in tiny model: --format peft or fused, no --model)")
FORMATS_HELP = ("a format (repeat for several; default flowopd): flowopd (our adapter folder), diffusers "
                "(pytorch_lora_weights.safetensors for StableDiffusion3Pipeline.load_lora_weights; SD3 bases), "
                "comfyui (one .safetensors for ComfyUI's LoRA loader; SD3 bases), peft (adapter_config.json + "
                "adapter_model.safetensors for PeftModel.from_pretrained), fused (the transformer with the LoRA "
                "folded in, for SD3Transformer2DModel.from_pretrained)")


def check_early(adapter: Path, out: Path) -> None:
    """What can be checked in milliseconds, before the export's modules and the model load: the adapter folder's
    files and a writable output folder."""
    from flowopd.layout import ADAPTER_META_FILE, ADAPTER_WEIGHTS_FILE

    missing = [n for n in (ADAPTER_WEIGHTS_FILE, ADAPTER_META_FILE) if not (adapter / n).is_file()]
    if missing:
        raise ValueError(f"{adapter} is not an adapter folder: it lacks {', '.join(missing)}; give a trainer's "
                         "OUT/adapter or a teacher's folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {out} cannot be created ({err.strerror}): give a folder you can write, e.g. "
                         "exports/") from None
    if not os.access(out, os.W_OK):
        raise ValueError(f"--out {out} is not writable: give a folder you can write, e.g. exports/")


def cmd_export(args: argparse.Namespace) -> None:
    adapter = Path(args.adapter)
    check_early(adapter, Path(args.out))
    from .services.export import ExportError, check_formats, export_adapter, run_card, slug

    formats = tuple(dict.fromkeys(args.formats or ["flowopd"]))
    try:
        check_formats(adapter, formats)  # before the model loads: a wrong format fails in a second
        from flowopd.models import load_model

        model = load_model(args.model)
        card = run_card(adapter, args.model or "the built-in tiny model")
        result = export_adapter(adapter, args.out, card, formats, model=model, name=args.name or slug(card.name))
    except ExportError as err:  # an export that cannot be written or does not verify is bad input here
        raise ValueError(str(err)) from None
    for fmt in result.formats:
        print(result.folder / fmt)
    print(f"verified: every format, loaded back onto the base model, draws the source adapter's image "
          f"(sha256 {result.image_sha256[:16]}...); zipped with its model card to {result.zip_path}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``export`` to the ``flowopd`` parser's commands."""
    p = sub.add_parser("export", help=HELP, description=HELP, epilog=f"example: {EXAMPLE}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("adapter", metavar="ADAPTER", help="an adapter folder (a trainer's OUT/adapter, an imported "
                   "teacher's folder): pytorch_lora_weights.safetensors + adapter.json")
    p.add_argument("--format", dest="formats", action="append", metavar="F", choices=EXPORT_FORMATS,
                   help=FORMATS_HELP)
    p.add_argument("--out", required=True, help="output folder: writes OUT/NAME/ (a folder per format, README.md, "
                   "export.json) and OUT/NAME.zip")
    p.add_argument("--name", help="the export's name (letters, digits, . _ -; default: the run folder's name "
                   "for OUT/adapter, else the adapter folder's)")
    p.add_argument("--model", help="the base model the adapter was trained on, folder or hub id (default: the "
                   "built-in tiny model); every format is loaded back onto it and checked")
    p.set_defaults(func=cmd_export)
