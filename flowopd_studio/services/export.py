"""Export an adapter (a teacher, a cold start, a student) as a LoRA, verified before it is called ready.

:func:`export_adapter` writes ``out_dir/<name>/`` with one folder per format, a model card (``README.md``),
the comparison grid when one is given and ``export.json``, checks that every format loads back onto the base
model and gives a fixed-seed image identical to the source adapter's, then zips the folder to
``out_dir/<name>.zip``. Formats are entries of :data:`FORMATS` (a writer and a loader): the SD3.5 issue adds
``diffusers``, ``comfyui`` or ``fused`` there, and every caller gets them through the same function.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flowopd.adapters import META_NAME, WEIGHTS_NAME, drop_adapter, load_adapter, read_adapter_metadata, use_adapter
from flowopd.models.base import FlowModel
from flowopd.sampling import generate

from .adapter_cache import cached_adapter
from .files import safe_name
from .sources import Source

VERIFY_PROMPT = "a photo of a red square left of a triangle"
VERIFY_SEED = 0
VERIFY_STEPS = 8
VERIFY_NAME = "studio_export_check"


class ExportError(RuntimeError):
    """An export could not be written, or what was written does not give the source's images."""


@dataclass(frozen=True)
class ExportFormat:
    """``write(adapter_folder, target_folder)`` writes the format; ``load(model, target_folder, name)`` loads
    it back as adapter ``name`` (for the verification)."""

    write: Callable[[Path, Path], None]
    load: Callable[[FlowModel, Path, str], object]
    help: str


def _write_flowopd(adapter: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for name in (WEIGHTS_NAME, META_NAME):
        shutil.copy2(adapter / name, target / name)


FORMATS: dict[str, ExportFormat] = {
    "flowopd": ExportFormat(_write_flowopd, load_adapter, "our adapter folder (flowopd.adapters.save_adapter: LoRA "
                                                    "weights in safetensors and adapter.json)"),
}


@dataclass
class ModelCard:
    """What README.md says about an export."""

    name: str
    base_model: str  # how the app names the base model
    kind: str = "adapter"
    origin: str = ""
    task: str | None = None
    rewards: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)  # task -> score, "average"
    grid: Path | None = None  # a comparison grid PNG to include


@dataclass
class ExportResult:
    folder: Path
    zip_path: Path
    formats: tuple[str, ...]
    verified: bool
    image_sha256: str | None
    card: str


def slug(text: str) -> str:
    """A plain file name from a label.

    >>> slug("teacher text (seed 0)")
    'teacher-text-seed-0'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "adapter"


def _image(model: FlowModel, name: str) -> bytes:
    with use_adapter(model, name):
        images = generate(model, [VERIFY_PROMPT], seeds=[VERIFY_SEED], num_steps=VERIFY_STEPS, guidance=3.0)
    return images.cpu().numpy().tobytes()


def verify(model: FlowModel, source: Path, exported: Path, fmt: str) -> str:
    """Load ``exported`` (format ``fmt``) and compare its fixed-seed image with the source adapter's; returns
    the image's sha256, or raises ExportError."""
    want = _image(model, cached_adapter(model, source))
    drop_adapter(model, VERIFY_NAME)
    try:
        FORMATS[fmt].load(model, exported, VERIFY_NAME)
        got = _image(model, VERIFY_NAME)
    except Exception as err:
        raise ExportError(f"the {fmt} export does not load back onto the base model ({err})") from err
    finally:
        drop_adapter(model, VERIFY_NAME)
    if got != want:
        raise ExportError(f"the {fmt} export loads but its seed-{VERIFY_SEED} image differs from the source "
                          "adapter's: not exported")
    return hashlib.sha256(want).hexdigest()


def card_markdown(card: ModelCard, meta: dict, formats: tuple[str, ...], sha: str | None) -> str:
    lines = [f"# {card.name}", "", f"A LoRA {card.kind} for **{card.base_model}** (base model id "
             f"`{meta.get('base_model')}`), exported by Flow-OPD Studio.", "",
             f"- Where it comes from: {card.origin or 'n/a'}",
             f"- Task: {card.task or 'all four (compose, text, prefer, quality)'}",
             f"- Rewards: {', '.join(card.rewards) or 'n/a'}",
             f"- LoRA: rank {meta.get('rank')}, alpha {meta.get('alpha')}, "
             f"targets {', '.join(meta.get('target_modules', []))}",
             f"- Formats: {', '.join(f'`{f}/` ({FORMATS[f].help})' for f in formats)}"]
    if sha:
        lines.append(f"- Verified: loaded back onto the base model, the image of \"{VERIFY_PROMPT}\" (seed "
                     f"{VERIFY_SEED}, {VERIFY_STEPS} ODE steps) is identical to the source adapter's "
                     f"(sha256 {sha[:16]}...)")
    if card.scores:
        keys = list(card.scores)
        lines += ["", "## Scores", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
                  "| " + " | ".join(f"{card.scores[k]:.3f}" for k in keys) + " |"]
    if card.grid is not None:
        lines += ["", "## Comparison", "", "![comparison grid](comparison.png)"]
    if card.config:
        lines += ["", "## Training config", "", "```json", json.dumps(card.config, indent=1, sort_keys=True), "```"]
    lines += ["", "## Use", "", "```python", "from flowopd.adapters import load_adapter, use_adapter",
              f'load_adapter(model, "flowopd", "{slug(card.name).replace(".", "_")}")  # model: the base model above',
              "```", ""]
    return "\n".join(lines)


def export_adapter(source: Source | Path, out_dir: str | Path, card: ModelCard | None = None,
                   formats: tuple[str, ...] = ("flowopd",), *, model: FlowModel | None = None,
                   name: str | None = None) -> ExportResult:
    """Export ``source``'s adapter to ``out_dir/<name>/`` and ``out_dir/<name>.zip``.

    Args:
        source: a :class:`Source` with an adapter folder, or an adapter folder.
        card: the model card; default: a card naming only the adapter.
        formats: keys of :data:`FORMATS`.
        model: the base model; given, every format is verified on it (the caller holds the app's lock).
        name: the export's plain file name (default: the source's label).

    Raises:
        ExportError: unknown format, no adapter, or a format that does not load back to the same image.
        flowopd_studio.storage.errors.UnsafePath: ``name`` is not a plain name.
    """
    folder_in = source.folder if isinstance(source, Source) else Path(source)
    if folder_in is None:
        raise ExportError("the base model has no adapter to export: pick a teacher, a cold start or a student")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"formats {unknown or '(none)'}: choose from {', '.join(FORMATS)}")
    meta = read_adapter_metadata(folder_in)
    label = source.label if isinstance(source, Source) else folder_in.name
    name = safe_name(name or slug(label), "export name")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final, work = out / name, out / f".{name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    try:
        for fmt in formats:
            FORMATS[fmt].write(folder_in, work / fmt)
        sha = None
        if model is not None:
            for fmt in formats:
                sha = verify(model, folder_in, work / fmt, fmt)
        card = card or ModelCard(name, meta.get("base_model", "?"))
        if card.grid is not None:
            shutil.copy2(card.grid, work / "comparison.png")
        text = card_markdown(card, meta, tuple(formats), sha)
        (work / "README.md").write_text(text)
        (work / "export.json").write_text(json.dumps({
            "name": name, "formats": list(formats), "source": str(folder_in), "adapter": meta,
            "verified": sha is not None,
            "verify": {"prompt": VERIFY_PROMPT, "seed": VERIFY_SEED, "steps": VERIFY_STEPS, "sha256": sha},
            "exported_at": time.time()}, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    zip_path = Path(shutil.make_archive(str(out / name), "zip", root_dir=out, base_dir=name))
    return ExportResult(final, zip_path, tuple(formats), sha is not None, sha, text)


def known_scores(source: Source, store=None) -> dict:
    """The scores known for ``source``: its own metrics (an example's), else a run's latest ``eval/<task>``."""
    if source.metrics:
        return dict(source.metrics)
    if store is not None and source.key.startswith("run:"):
        latest = store.latest_metrics(source.key.split(":", 1)[1])
        return {k.split("/", 1)[1]: v for k, v in latest.items() if k.startswith("eval/") and k.count("/") == 1}
    return {}
