"""Parse a composition prompt of the tiny world into its GenEval-style metadata (the ``compose`` record).

The grammar is the one ``flowopd.world.prompts`` writes, opened up so that its parts combine freely::

    prompt   := [prefix] body [" on a plain background"]
    prefix   := "a photo of " | "a picture of " | "a drawing of "
    body     := object | object " and " object | object " " relation " " object
    object   := ("a" | "an" | number) [" " colour] " " shape ["s"]
    relation := "left of" | "right of" | "above" | "below"

with ``number`` one to four, ``colour`` from the palette and ``shape`` circle, square or triangle. The
metadata follows GenEval: one ``include`` clause per object; a number asks for an exact count, so it also
adds an ``exclude`` clause of count n + 1; ``X left of Y`` lists Y first and gives X ``position: ["left of",
0]``. Every compose prompt of the committed splits parses back to its committed record.
"""

from __future__ import annotations

import re

from .prompts import NUMBER_WORDS, RELATIONS
from .scene import PALETTE, SHAPES

PREFIXES = ("a photo of ", "a picture of ", "a drawing of ")
SUFFIX = " on a plain background"
EXAMPLES = ("a photo of two circles", "a photo of a red square left of a triangle")
_COUNTS = {"a": 1, "an": 1, **{word: n for n, word in NUMBER_WORDS.items()}}
_OBJECT = re.compile(rf"({'|'.join(_COUNTS)}) (?:({'|'.join(PALETTE)}) )?({'|'.join(SHAPES)})s?")
_RELATION = re.compile(rf" ({'|'.join(RELATIONS)}) ")


class NotACompositionPrompt(ValueError):
    """The prompt is outside the composition grammar, so the ``compose`` reward has no clauses to judge."""


def _clause(phrase: str, prompt: str) -> tuple[dict, bool]:
    """One object phrase's include clause, and whether a number word made its count exact."""
    match = _OBJECT.fullmatch(phrase)
    if match is None:
        raise NotACompositionPrompt(
            f"{prompt!r} is not a composition prompt: {phrase!r} is not an object such as 'a red circle' or "
            f"'three squares' (counts: a, {', '.join(NUMBER_WORDS.values())}; colours: {', '.join(PALETTE)}; "
            f"shapes: {', '.join(SHAPES)})")
    count, color, shape = match.groups()
    clause: dict = {"class": shape, "count": _COUNTS[count]}
    if color:
        clause["color"] = color
    return clause, count not in ("a", "an")


def _tag(include: list[dict], exact: list[bool]) -> str | None:
    """The GenEval category (``COMPOSE_TAGS``) the parsed prompt belongs to, or None for other combinations."""
    colored = [bool(c.get("color")) for c in include]
    if len(include) == 1:
        if exact[0]:
            return "counting" if include[0]["count"] > 1 and not colored[0] else None
        return "colors" if colored[0] else "single_object"
    if any(exact):
        return None
    if include[1].get("position"):
        return None if any(colored) else "position"
    return "color_attr" if all(colored) else None if any(colored) else "two_object"


def parse_compose_prompt(prompt: str) -> dict:
    """The ``compose`` prompt record of ``prompt``: ``prompt``, ``task``, ``include``, ``exclude`` for exact
    counts, and ``tag`` when the prompt is one of the six GenEval categories of ``COMPOSE_TAGS``.

    Args:
        prompt: any text; case and runs of spaces are ignored.

    Returns:
        The record, as the committed compose splits hold it.

    Raises:
        NotACompositionPrompt: when ``prompt`` is outside the grammar; the message says which part.

    Example:
        >>> parse_compose_prompt("a photo of two circles")
        {'prompt': 'a photo of two circles', 'task': 'compose', 'include': [{'class': 'circle', 'count': 2}], \
'exclude': [{'class': 'circle', 'count': 3}], 'tag': 'counting'}
        >>> parse_compose_prompt("a photo of a red square left of a triangle")["include"]
        [{'class': 'triangle', 'count': 1}, {'class': 'square', 'count': 1, 'color': 'red', 'position': ['left of', 0]}]
    """
    text = " ".join(prompt.lower().split())
    text = next((text[len(p):] for p in PREFIXES if text.startswith(p)), text)
    text = text.removesuffix(SUFFIX)
    relations = _RELATION.findall(text)
    if len(relations) + text.count(" and ") > 1:
        raise NotACompositionPrompt(f"{prompt!r} is not a composition prompt: it joins more than two objects; "
                                    f"write one or two, e.g. {EXAMPLES[1]!r}")
    if relations:
        (subject, s_exact), (anchor, a_exact) = (_clause(part, prompt) for part in _RELATION.split(text)[::2])
        if subject["count"] != 1 or anchor["count"] != 1:
            raise NotACompositionPrompt(f"{prompt!r}: a relation ({relations[0]!r}) holds between single objects; "
                                        f"write e.g. {EXAMPLES[1]!r}")
        parts = [(anchor, a_exact), ({**subject, "position": [relations[0], 0]}, s_exact)]
    else:
        parts = [_clause(part, prompt) for part in text.split(" and ")]
    include, exact = [c for c, _ in parts], [e for _, e in parts]
    if len(include) == 2 and include[0]["class"] == include[1]["class"]:
        raise NotACompositionPrompt(f"{prompt!r} names the {include[0]['class']} twice: the detector cannot tell "
                                    "which clause an object answers; name two different shapes")
    record: dict = {"prompt": prompt.strip(), "task": "compose", "include": include}
    if any(exact):
        record["exclude"] = [{"class": c["class"], "count": c["count"] + 1} for c, e in parts if e]
    tag = _tag(include, exact)
    if tag:
        record["tag"] = tag
    return record


def check_compose_metadata(record: object) -> None:
    """Raise ``ValueError`` unless ``record`` holds clauses the detector can judge (``include`` and an optional
    ``exclude``, as :func:`parse_compose_prompt` writes them); the message says which field is wrong.

    Example:
        >>> check_compose_metadata({"include": [{"class": "circle", "count": 2}]})
        >>> check_compose_metadata({"include": [{"class": "hexagon", "count": 1}]})
        Traceback (most recent call last):
        ...
        ValueError: include[0]: class 'hexagon' is not a shape: use one of circle, square, triangle
    """
    if not isinstance(record, dict):
        raise ValueError(f"the metadata must be a JSON object, got {type(record).__name__}")
    include = record.get("include")
    if not isinstance(include, list) or not include:
        raise ValueError('the compose reward needs a non-empty "include" list of clauses such as '
                         '{"class": "circle", "count": 2}')
    exclude = record.get("exclude", [])
    if not isinstance(exclude, list):
        raise ValueError('"exclude" must be a list of clauses such as {"class": "circle", "count": 3}')
    for field, clauses in (("include", include), ("exclude", exclude)):
        for i, clause in enumerate(clauses):
            where = f"{field}[{i}]"
            if not isinstance(clause, dict):
                raise ValueError(f"{where} must be an object such as {{\"class\": \"circle\", \"count\": 1}}")
            if clause.get("class") not in SHAPES:
                raise ValueError(f"{where}: class {clause.get('class')!r} is not a shape: use one of "
                                 f"{', '.join(SHAPES)}")
            count = clause.get("count")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"{where}: count {count!r} is invalid: use a whole number >= 1")
            if clause.get("color") is not None and clause["color"] not in PALETTE:
                raise ValueError(f"{where}: color {clause['color']!r} is not in the palette: use one of "
                                 f"{', '.join(PALETTE)}")
            position = clause.get("position")
            if position is not None and not (isinstance(position, list) and len(position) == 2
                                             and position[0] in RELATIONS and isinstance(position[1], int)
                                             and 0 <= position[1] < i):
                raise ValueError(f"{where}: position {position!r} is invalid: use [relation, index of an earlier "
                                 f"include clause] with relation one of {', '.join(RELATIONS)}")
