"""Prompts of the four tasks, with GenEval-style metadata, and scenes that satisfy them.

Every prompt is a record (a JSON-serialisable dict) with at least ``prompt``, ``task`` and ``tag``:

- ``compose``: ``include`` clauses ``{"class", "count", "color"?, "position"?: [relation, index]}`` and,
  for counting, an ``exclude`` clause ``{"class", "count": n + 1}`` (GenEval's rule for exact counts).
  ``position: ["left of", 0]`` means this object is left of ``include[0]``.
- ``text``: ``target``, the word between the first pair of double quotes.
- ``prefer``: ``include`` clauses describing the subject (the reward itself judges the look).
- ``quality``: a prompt drawn from another task, its metadata kept, ``source_task`` naming it.

A *mixed* prompt (prompt set ``mixed``, not a task of its own) touches two tasks at once, e.g.
``a sign that says "AK" and two red circles``: its ``task`` is ``mixed``, ``tasks`` holds its task labels with
weights (``{"compose": 0.5, "text": 0.5}``, read by :func:`task_weights`), and it carries both tasks' metadata
(``target`` for the text reward, ``include``/``exclude`` for the compose reward), so both rewards score it.
Its words are all in the base model's vocabulary ("and" joins the parts; "beside" would map to ``<unk>``).
"""

from __future__ import annotations

import random
import re

from .scene import ALPHABET, BACKGROUNDS, MAX_WORD_LEN, PALETTE, SHAPES, SIZES, Scene, SceneObject

TASKS = ("compose", "text", "prefer", "quality")
MIXED = "mixed"
PROMPT_SETS = (*TASKS, MIXED)  # what ``load_prompts`` reads: each task's split, plus the mixed split
MIXED_TASKS = ("compose", "text")  # the tasks every mixed prompt touches
MIXED_TAGS = ("object", "counting")  # a word and one object (``a red circle``), or a word and 2-3 objects
COMPOSE_TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS = ("left of", "right of", "above", "below")
NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
COLORS = tuple(PALETTE)
TEXT_TEMPLATES = ('a sign that says "{w}"', 'the word "{w}"', 'a label reading "{w}"')
MIN_WORD_LEN = 2


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def compose_record(tag: str, rng: random.Random) -> dict:
    """A random GenEval-style prompt of category ``tag``."""
    a, b = rng.sample(SHAPES, 2)
    ca, cb = rng.sample(COLORS, 2)
    if tag == "single_object":
        return {"prompt": f"a photo of a {a}", "include": [{"class": a, "count": 1}]}
    if tag == "two_object":
        return {"prompt": f"a photo of a {a} and a {b}",
                "include": [{"class": a, "count": 1}, {"class": b, "count": 1}]}
    if tag == "counting":
        n = rng.randint(2, 4)
        return {"prompt": f"a photo of {NUMBER_WORDS[n]} {a}s", "include": [{"class": a, "count": n}],
                "exclude": [{"class": a, "count": n + 1}]}
    if tag == "colors":
        return {"prompt": f"a photo of {_article(ca)} {ca} {a}",
                "include": [{"class": a, "count": 1, "color": ca}]}
    if tag == "position":
        rel = rng.choice(RELATIONS)
        return {"prompt": f"a photo of a {a} {rel} a {b}",
                "include": [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [rel, 0]}]}
    if tag == "color_attr":
        return {"prompt": f"a photo of {_article(ca)} {ca} {a} and {_article(cb)} {cb} {b}",
                "include": [{"class": a, "count": 1, "color": ca}, {"class": b, "count": 1, "color": cb}]}
    raise ValueError(f"unknown compose tag {tag!r}: use one of {COMPOSE_TAGS}")


def random_word(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(MIN_WORD_LEN, MAX_WORD_LEN)))


def text_record(word: str, rng: random.Random) -> dict:
    return {"prompt": rng.choice(TEXT_TEMPLATES).format(w=word), "tag": "text", "target": word}


def prefer_record(rng: random.Random) -> dict:
    shape, color = rng.choice(SHAPES), rng.choice(COLORS)
    form = rng.randrange(3)
    if form == 0:
        prompt = f"a picture of {_article(color)} {color} {shape}"
        include = [{"class": shape, "count": 1, "color": color}]
    elif form == 1:
        n = rng.randint(2, 3)
        prompt = f"a drawing of {NUMBER_WORDS[n]} {color} {shape}s"
        include = [{"class": shape, "count": n, "color": color}]
    else:
        prompt = f"{_article(color)} {color} {shape} on a plain background"
        include = [{"class": shape, "count": 1, "color": color}]
    return {"prompt": prompt, "tag": "prefer", "include": include}


def _place(sizes: list[str], rng: random.Random, tries: int = 2000) -> list[tuple[float, float]]:
    """Non-overlapping centres (fractions of the side) for objects of the given sizes."""
    for _ in range(tries):
        centres: list[tuple[float, float]] = []
        for size in sizes:
            half = SIZES[size] / 2
            x, y = rng.uniform(half + 0.04, 1 - half - 0.04), rng.uniform(half + 0.04, 1 - half - 0.04)
            if all(abs(x - px) > half + SIZES[ps] / 2 + 0.08 or abs(y - py) > half + SIZES[ps] / 2 + 0.08
                   for (px, py), ps in zip(centres, sizes)):
                centres.append((x, y))
            else:
                break
        if len(centres) == len(sizes):
            return centres
    raise RuntimeError(f"could not place {len(sizes)} objects without overlap")


def relation_holds(rel: str, a: tuple[float, float], b: tuple[float, float], *, margin: float,
                   dominance: float = 1.0) -> bool:
    """Whether centre ``a`` is ``rel`` centre ``b``: the offset along the relation's axis must exceed
    ``margin`` and ``dominance`` times the offset across it."""
    dx, dy = a[0] - b[0], a[1] - b[1]
    along, across = {"left of": (-dx, dy), "right of": (dx, dy), "above": (-dy, dx), "below": (dy, dx)}[rel]
    return along > max(dominance * abs(across), margin)


def scene_for(record: dict, rng: random.Random) -> Scene:
    """A random scene that satisfies ``record`` exactly (what a perfect generator would draw)."""
    background = rng.choice(BACKGROUNDS)
    if record.get("target") and record.get("include"):
        return _mixed_scene(record, background, rng)
    if record.get("target"):
        return Scene(text=record["target"], background=background)
    specs: list[tuple[str, str, dict]] = []
    for clause in record["include"]:
        for _ in range(clause["count"]):
            specs.append((clause["class"], clause.get("color") or rng.choice(COLORS), clause))
    max_size = "big" if len(specs) <= 2 else "small"
    sizes = [rng.choice(("small", max_size)) for _ in specs]
    for _ in range(100):
        centres = _place(sizes, rng)
        # Stricter than the detector's rule, so pixel rounding never flips a clean render's relation.
        ok = all(relation_holds(c["position"][0], centres[i], centres[0], margin=0.12, dominance=1.5)
                 for i, (_, _, c) in enumerate(specs) if c.get("position"))
        if ok:
            break
    objects = tuple(SceneObject(shape, color, size, x, y)
                    for (shape, color, _), size, (x, y) in zip(specs, sizes, centres))
    return Scene(objects=objects, background=background)


def task_weights(record: dict) -> dict[str, float]:
    """The prompt's task labels with weights summing to 1: its ``tasks`` normalised, else ``{task: 1.0}``.

    Example:
        >>> task_weights({"task": "mixed", "tasks": {"compose": 1, "text": 3}}), task_weights({"task": "text"})
        ({'compose': 0.25, 'text': 0.75}, {'text': 1.0})
    """
    tasks = record.get("tasks")
    if tasks is None:
        if not record.get("task"):
            raise ValueError(f"prompt {record.get('prompt')!r} has neither a task nor task labels (tasks)")
        return {str(record["task"]): 1.0}
    if not isinstance(tasks, dict) or not tasks or any(
            isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0 for w in tasks.values()):
        raise ValueError(f"prompt {record.get('prompt')!r}: tasks={tasks!r} is invalid: use a mapping of tasks to "
                         'weights >= 0, e.g. {"compose": 0.5, "text": 0.5}')
    total = float(sum(tasks.values()))
    if not 0 < total < float("inf"):
        raise ValueError(f"prompt {record.get('prompt')!r}: tasks={tasks!r} needs a positive, finite total weight")
    return {str(t): float(w) / total for t, w in tasks.items() if w > 0}


def primary_task(record: dict) -> str:
    """The one task a one-hot router sends ``record`` to: its highest-weight task label, ties going to the
    earliest in :data:`TASKS` (so an even ``compose``/``text`` mix goes to ``compose``).

    Example:
        >>> primary_task({"tasks": {"text": 0.5, "compose": 0.5}}), primary_task({"task": "text"})
        ('compose', 'text')
    """
    weights = task_weights(record)
    order = {t: i for i, t in enumerate(TASKS)}
    return min(weights, key=lambda t: (-weights[t], order.get(t, len(TASKS)), t))


def mixed_record(word: str, rng: random.Random) -> dict:
    """A random mixed prompt: ``word`` written as a text prompt, ``and`` one to three objects of one shape.

    Example:
        >>> r = mixed_record("AK", random.Random(0))
        >>> r["prompt"], r["tasks"], r["target"], r["include"]
        ('the word "AK" and three purple squares', {'compose': 0.5, 'text': 0.5}, 'AK', \
[{'class': 'square', 'count': 3, 'color': 'purple'}])
    """
    tag = rng.choice(MIXED_TAGS)
    shape, color = rng.choice(SHAPES), rng.choice(COLORS) if rng.random() < 0.75 else None
    count = 1 if tag == "object" else rng.randint(2, 3)
    noun = f"{color} {shape}" if color else shape
    phrase = f"{_article(noun)} {noun}" if count == 1 else f"{NUMBER_WORDS[count]} {noun}s"
    clause = {"class": shape, "count": count, **({"color": color} if color else {})}
    record = {"prompt": f"{rng.choice(TEXT_TEMPLATES).format(w=word)} and {phrase}", "task": MIXED, "tag": tag,
              "tasks": dict.fromkeys(MIXED_TASKS, 0.5), "target": word, "include": [clause]}
    if count > 1:  # a number word asks for an exact count (GenEval's rule, as the compose grammar)
        record["exclude"] = [{"class": shape, "count": count + 1}]
    return record


# Mixed scenes: the word keeps its place in the middle rows (34 %-66 % of the side); small objects go to the
# bands above and below it, at least 5 % of the side away from the ink, so neither reader sees the other's part.
MIXED_BAND_CENTRES = ((0.15, 0.18), (0.82, 0.85))


def _mixed_scene(record: dict, background: tuple[int, int, int], rng: random.Random) -> Scene:
    specs = [(c["class"], c.get("color") or rng.choice(COLORS)) for c in record["include"] for _ in range(c["count"])]
    half, gap = SIZES["small"] / 2, SIZES["small"] + 0.08
    for _ in range(2000):
        placed: list[tuple[float, float]] = []
        for _spec in specs:
            band = rng.choice(MIXED_BAND_CENTRES)
            x, y = rng.uniform(half + 0.04, 1 - half - 0.04), rng.uniform(*band)
            if any(abs(y - py) < 0.5 and abs(x - px) < gap for px, py in placed):
                break
            placed.append((x, y))
        if len(placed) == len(specs):
            objects = tuple(SceneObject(s, c, "small", x, y) for (s, c), (x, y) in zip(specs, placed))
            return Scene(objects=objects, text=record["target"], background=background)
    raise RuntimeError(f"could not place the {len(specs)} objects of {record['prompt']!r} around its word")


def sample_record(task: str, rng: random.Random) -> dict:
    """One random prompt record of ``task`` (words and combinations not yet filtered by split)."""
    if task == "compose":
        record = compose_record(rng.choice(COMPOSE_TAGS), rng)
    elif task == "text":
        record = text_record(random_word(rng), rng)
    elif task == "prefer":
        record = prefer_record(rng)
    elif task == "quality":
        source = rng.choice(("compose", "text", "prefer"))
        record = dict(sample_record(source, rng), source_task=source)
    else:
        raise ValueError(f"unknown task {task!r}: use one of {TASKS}")
    record["task"] = task
    return record


_QUOTED = re.compile(r'"([^"]*)"')


def target_of(prompt: str, meta: dict | None = None) -> str | None:
    """The word to draw (the ``text`` rewards' target): ``meta["target"]`` or the text between the first pair of
    double quotes, as Flow-GRPO's OCR prompts write it."""
    if meta and meta.get("target"):
        return str(meta["target"])
    match = _QUOTED.search(prompt)
    return match.group(1) if match else None
