"""Same-seed comparison: every source (base, teachers, cold start, student) samples the same prompts from the
same initial noise, every reward scores every image, the best per row is marked and per-task means give the
reproduction's table for these prompts.

Callers hold the app's lock: sources are loaded onto, and sampled from, the one shared model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from flowopd.adapters import adapter_guidance, use_adapter
from flowopd.models.base import FlowModel, to_pil
from flowopd.rewards import REWARDS
from flowopd.sampling import generate
from flowopd.world.grammar import NotACompositionPrompt, parse_compose_prompt
from flowopd.world.prompts import TASKS
from flowopd.world.splits import load_prompts, record_for_prompt

from .adapter_cache import cached_adapter
from .scores import scoring_rewards
from .sources import Source

MAX_PROMPTS = 32
BASE_GUIDANCE = 3.0  # the base model's (and an adapter without its own) CFG scale: the protocol's (EvalConfig)
MAX_SEEDS = 8
# One comparison holds the model (and, on a GPU, the device) for all its sampling: at most this many image
# steps (prompts x seeds x models x ODE steps; the built-in model samples about 120 a second on 2 cores).
MAX_IMAGE_STEPS = 20_000


def check_budget(prompts: int, seeds: int, models: int, steps: int) -> None:
    """Refuse a comparison that would hold the sampler for minutes, naming what to lower.

    >>> check_budget(4, 1, 7, 20)
    >>> check_budget(32, 8, 7, 100)
    Traceback (most recent call last):
    ...
    ValueError: Compare: 32 prompts x 8 seeds x 7 models x 100 steps = 179200 image steps; the limit is 20000: ...
    """
    total = prompts * seeds * models * steps
    if total > MAX_IMAGE_STEPS:
        raise ValueError(f"Compare: {prompts} prompts x {seeds} seeds x {models} models x {steps} steps = {total} "
                         f"image steps; the limit is {MAX_IMAGE_STEPS}: use fewer prompts, seeds, models or steps")


@dataclass(frozen=True)
class PromptItem:
    """A prompt to compare, its metadata record and its task (None: outside the four tasks)."""

    prompt: str
    task: str | None
    record: dict


@dataclass
class Comparison:
    """The grid: ``images[r][c]`` and ``scores[r][c]`` (reward -> score, None when the reward cannot judge the
    prompt) for row ``r`` (``rows[r]``: a prompt and a seed) and column ``c`` (``columns[c]``)."""

    columns: list[Source]
    rows: list[tuple[PromptItem, int]]
    images: list[list[Image.Image]] = field(default_factory=list)
    scores: list[list[dict[str, float | None]]] = field(default_factory=list)
    num_steps: int = 20
    guidance: float | None = None  # one scale for every column; None: each at its own (column_guidance)
    column_guidance: list[float] = field(default_factory=list)  # the CFG scale each column was sampled at


def task_of(prompt: str, record: dict) -> str | None:
    """The task a typed prompt belongs to: its record's (the task it was made for, when the ``quality`` set
    borrowed it), else ``compose`` when the grammar parses it, else ``text`` when it quotes a word, else None."""
    task = record.get("source_task") or record.get("task")
    if task in TASKS:
        return task
    try:
        parse_compose_prompt(prompt)
        return "compose"
    except NotACompositionPrompt:
        return "text" if prompt.count('"') >= 2 else None


def default_items() -> list[PromptItem]:
    """The first test prompt of each task, all different (``quality`` borrows the other tasks' prompts): what
    the Compare tab shows at first launch and puts in its Prompts box."""
    items: list[PromptItem] = []
    for task in TASKS:
        items.append(next(i for i in prompt_items(task=task, count=MAX_PROMPTS)
                          if i.prompt not in {j.prompt for j in items}))
    return items


def prompt_items(text: str = "", task: str | None = None, count: int = 4) -> list[PromptItem]:
    """The prompts to compare: the first ``count`` test prompts of ``task`` when given, else the lines of
    ``text`` (one prompt per line; blank lines skipped).

    Raises:
        ValueError: no prompt, too many, or an unknown task; the message names the field and the fix.
    """
    if task:
        if task not in TASKS:
            raise ValueError(f"Prompt set {task!r} is unknown: choose one of {', '.join(TASKS)}")
        if not 1 <= int(count) <= MAX_PROMPTS:
            raise ValueError(f"Prompts from the set: {count} is out of range; pick 1 to {MAX_PROMPTS}")
        return [PromptItem(r["prompt"], task, r) for r in load_prompts(task, "test")[:int(count)]]
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        raise ValueError("Prompts is empty: type a prompt (one per line) or pick a task's prompt set")
    if len(lines) > MAX_PROMPTS:
        raise ValueError(f"Prompts holds {len(lines)} lines: compare at most {MAX_PROMPTS} at once")
    items = []
    for line in lines:
        record = record_for_prompt(line)
        items.append(PromptItem(line, task_of(line, record), record))
    return items


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0, 1, 2"`` (commas or spaces); each a whole number >= 0.

    >>> parse_seeds("0, 7 3")
    [0, 7, 3]
    """
    parts = str(text or "").replace(",", " ").split()
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"Seeds {text!r}: give whole numbers >= 0 separated by commas, e.g. 0, 1") from None
    if not seeds or any(s < 0 for s in seeds) or len(seeds) > MAX_SEEDS:
        raise ValueError(f"Seeds {text!r}: give 1 to {MAX_SEEDS} whole numbers >= 0, e.g. 0, 1")
    return seeds


def score_images(images: list[Image.Image], item: PromptItem, rewards: dict | None = None
                 ) -> list[dict[str, float | None]]:
    """Every reward's score per image of ``item`` (``rewards``: the columns' rewards, default the tiny world's;
    :func:`flowopd_studio.services.scores.scoring_rewards`); ``compose`` is None for a prompt outside its
    grammar, a column without a reward None."""
    try:
        clauses = parse_compose_prompt(item.prompt)
    except NotACompositionPrompt:
        clauses = None
    out: list[dict[str, float | None]] = [{} for _ in images]
    for name, fn in (REWARDS if rewards is None else rewards).items():
        if fn is None or (name == "compose" and clauses is None):
            values: list[float | None] = [None] * len(images)
        else:
            meta = clauses if name == "compose" else item.record
            values = [float(v) for v in fn(images, [item.prompt] * len(images), [meta] * len(images))]
        for cell, v in zip(out, values):
            cell[name] = v
    return out


def compare(model: FlowModel, sources: list[Source], items: list[PromptItem], seeds: list[int], *,
            num_steps: int = 20, guidance: float | None = None, base_guidance: float = BASE_GUIDANCE) -> Comparison:
    """Sample every (prompt, seed) with every source from the same initial noise and score the images; each
    source at its own guidance (its adapter.json's; the base and adapters without one at ``base_guidance``)
    unless ``guidance`` overrides them all."""
    if not sources:
        raise ValueError("Models is empty: pick at least one model to compare")
    rows = [(item, seed) for item in items for seed in seeds]
    prompts, row_seeds = [i.prompt for i, _ in rows], [s for _, s in rows]
    columns: list[list[Image.Image]] = []
    scales = [adapter_guidance(s.folder, base_guidance) if guidance is None else float(guidance) for s in sources]
    for source, scale in zip(sources, scales):
        name = cached_adapter(model, source.folder) if source.folder is not None else None
        with use_adapter(model, name):
            columns.append(to_pil(generate(model, prompts, seeds=row_seeds, num_steps=num_steps, guidance=scale)))
    result = Comparison(list(sources), rows, num_steps=num_steps, guidance=guidance, column_guidance=scales)
    rewards = scoring_rewards(model)
    for r, (item, _) in enumerate(rows):
        row_images = [col[r] for col in columns]
        result.images.append(row_images)
        result.scores.append(score_images(row_images, item, rewards))
    return result


def row_score(scores: dict[str, float | None], task: str | None) -> float | None:
    """What ranks a cell: the score of its prompt's task reward, else the mean of the rewards that judged it."""
    if task in scores and scores[task] is not None:
        return scores[task]
    values = [v for v in scores.values() if v is not None]
    return sum(values) / len(values) if values else None


def best_columns(result: Comparison) -> list[list[int]]:
    """Per row, the columns with the best :func:`row_score` (ties all marked; none when every cell ties)."""
    best = []
    for (item, _), cells in zip(result.rows, result.scores):
        values = [row_score(c, item.task) for c in cells]
        known = [v for v in values if v is not None]
        if not known or (len(known) > 1 and max(known) == min(known)):
            best.append([])
            continue
        top = max(known)
        best.append([c for c, v in enumerate(values) if v is not None and abs(v - top) < 1e-12])
    return best


def task_means(result: Comparison) -> list[dict[str, float | None]]:
    """Per column: each task's reward averaged over that task's rows, and ``average`` over those tasks
    (the reproduction's table for these prompts; ``compose`` is the reward's mean, not the category mean of
    the full evaluation)."""
    out = []
    for c in range(len(result.columns)):
        means: dict[str, float | None] = {}
        for task in TASKS:
            values = [cells[c][task] for (item, _), cells in zip(result.rows, result.scores)
                      if item.task == task and cells[c].get(task) is not None]
            means[task] = sum(values) / len(values) if values else None
        known = [v for v in means.values() if v is not None]
        means["average"] = sum(known) / len(known) if known else None
        out.append(means)
    return out
