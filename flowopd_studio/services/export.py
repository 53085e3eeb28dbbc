"""Export an adapter (a teacher, a cold start, a student) as a LoRA, verified before it is called ready.

:func:`export_adapter` writes ``out_dir/<name>/`` with one folder per format (:data:`FORMATS`: ``flowopd``,
``diffusers``, ``comfyui``, ``peft``, ``fused``), a model card (``README.md``, also in each format's folder), the
comparison grid when one is given and ``export.json``. Given the base model, it checks that every format loads
back and draws a fixed-seed image identical to the source adapter's (``fused``: to the source folded into the
base the same way), then zips the folder to ``out_dir/<name>.zip``. The CLI (``flowopd export``) and the app's
Export tab both call it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from flowopd.adapters import AdapterError, merged_adapter, read_adapter_metadata, use_adapter
from flowopd.adapters.formats import check_base
from flowopd.layout import (
    CHECKPOINT_DIR,
    COLDSTART_FILE,
    COMPARISON_FILE,
    CONFIG_FILE,
    EXPORT_FILE,
    RESULT_FILE,
    SFT_FILE,
)
from flowopd.models.base import FlowModel
from flowopd.sampling import generate

from .adapter_cache import cached_adapter
from .export_formats import FORMATS, VERIFY_NAME, ExportFormat
from .files import safe_name
from .sources import Source

__all__ = ["FORMATS", "VERIFY_NAME", "ExportError", "ExportFormat", "ExportResult", "ModelCard", "check_formats",
           "export_adapter", "known_scores", "run_card", "verify"]

VERIFY_PROMPT = "a photo of a red square left of a triangle"
VERIFY_SEED = 0
VERIFY_STEPS = 8


class ExportError(RuntimeError):
    """An export could not be written, or what was written does not give the source's images."""


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


def _image(model: FlowModel) -> bytes:
    images = generate(model, [VERIFY_PROMPT], seeds=[VERIFY_SEED], num_steps=VERIFY_STEPS, guidance=3.0)
    return images.cpu().numpy().tobytes()


def verify(model: FlowModel, source: Path, exported: Path, fmt: str) -> str:
    """Load ``exported`` (format ``fmt``) and compare its fixed-seed image with the source adapter's; returns
    the image's sha256, or raises ExportError."""
    name = cached_adapter(model, source)
    # A folded LoRA rounds differently from the LoRA matmuls: compare it with the source folded the same way.
    with (merged_adapter if FORMATS[fmt].merged else use_adapter)(model, name):
        want = _image(model)
    try:
        with FORMATS[fmt].load(model, exported):
            got = _image(model)
    except Exception as err:
        raise ExportError(f"the {fmt} export does not load back onto the base model ({err})") from err
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
        folded = " (`fused`: to the source folded into the base the same way)" if "fused" in formats else ""
        lines.append(f"- Verified: each format, loaded back onto the base model, draws the image of \"{VERIFY_PROMPT}"
                     f"\" (seed {VERIFY_SEED}, {VERIFY_STEPS} ODE steps) identical to the source adapter's{folded} "
                     f"(sha256 {sha[:16]}...)")
    if card.scores:
        keys = list(card.scores)
        lines += ["", "## Scores", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
                  "| " + " | ".join(f"{card.scores[k]:.3f}" for k in keys) + " |"]
    if card.grid is not None:
        lines += ["", "## Comparison", "", "![comparison grid](comparison.png)"]
    if card.config:
        lines += ["", "## Training config", "", "```json", json.dumps(card.config, indent=1, sort_keys=True), "```"]
    lines += ["", "## Use", "", "BASE is the base model above; each folder holds one format.", ""]
    for f in formats:
        lines += [f"`{f}/`:", "", "```python", FORMATS[f].usage, "```", ""]
    return "\n".join(lines)


def check_formats(adapter: Path, formats: tuple[str, ...]) -> dict:
    """The adapter folder's metadata, once every format is known and suits the adapter's base.

    Raises:
        ExportError: an unknown format, or one that needs another base (the message names those that fit).
        flowopd.adapters.AdapterError: ``adapter`` is not an adapter folder.
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"formats {unknown or '(none)'}: choose from {', '.join(FORMATS)}")
    meta = read_adapter_metadata(adapter)
    try:
        for fmt in formats:
            check_base(fmt, meta.get("base_model"))
    except AdapterError as err:
        raise ExportError(str(err)) from None
    return meta


def run_card(adapter: Path, base_model: str) -> ModelCard:
    """A card for an adapter folder of a trainer's run folder (``OUT/adapter``): the run's config (its
    checkpoint's ``config.json``, or a reproduce stage's ``result.json``), rewards and scores when found."""
    run = adapter.resolve().parent
    config, scores = {}, {}
    for path in (run / RESULT_FILE, run / CHECKPOINT_DIR / CONFIG_FILE, run / SFT_FILE, run / COLDSTART_FILE):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            metrics = data.get("metrics") if path.name == RESULT_FILE else None
            scores = scores or {k: v for k, v in (metrics or {}).items() if isinstance(v, int | float)}
            config = config or (data.get("config") if path.name == RESULT_FILE else data) or {}
    rewards = config.get("rewards") if isinstance(config, dict) else None
    return ModelCard(run.name if adapter.name == "adapter" else adapter.name, base_model, origin=str(adapter),
                     rewards=list(rewards) if isinstance(rewards, dict | list) else [],
                     config=config if isinstance(config, dict) else {}, scores=scores)


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
    meta = check_formats(folder_in, formats)
    label = source.label if isinstance(source, Source) else folder_in.name
    name = safe_name(name or slug(label), "export name")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final, work = out / name, out / f".{name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    try:
        for fmt in formats:
            try:
                FORMATS[fmt].write(folder_in, work / fmt, model)
            except (AdapterError, ValueError) as err:
                raise ExportError(f"format {fmt}: {err}") from None
        shas = {fmt: verify(model, folder_in, work / fmt, fmt) for fmt in formats} if model is not None else {}
        # the image of the source adapter itself (a fused format's is the folded source's)
        sha = next((shas[f] for f in shas if not FORMATS[f].merged), next(iter(shas.values()), None))
        card = card or ModelCard(name, meta.get("base_model", "?"))
        if card.grid is not None:
            shutil.copy2(card.grid, work / COMPARISON_FILE)
        text = card_markdown(card, meta, tuple(formats), sha)
        for where in (work, *(work / fmt for fmt in formats)):  # a format's folder carries the card too
            (where / "README.md").write_text(text)
        (work / EXPORT_FILE).write_text(json.dumps({
            "name": name, "formats": list(formats), "source": str(folder_in), "adapter": meta,
            "verified": sha is not None,
            "verify": {"prompt": VERIFY_PROMPT, "seed": VERIFY_SEED, "steps": VERIFY_STEPS, "sha256": sha,
                       "sha256_by_format": shas},
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
