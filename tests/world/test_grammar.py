"""``flowopd.world.grammar``: any composition prompt parses into the metadata the compose reward judges."""

from __future__ import annotations

import pytest

from flowopd.world.grammar import EXAMPLES, NotACompositionPrompt, parse_compose_prompt
from flowopd.world.splits import load_prompts


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_committed_compose_prompt_parses_back_to_its_record(split: str) -> None:
    records = load_prompts("compose", split)
    for record in records:
        parsed = parse_compose_prompt(record["prompt"])
        if "tag" not in record:  # the train records carry no category
            parsed.pop("tag")
        assert parsed == record
    assert len(records) == {"train": 3000, "test": 96}[split]


def test_quality_and_prefer_prompts_parse_to_their_clauses() -> None:
    for record in load_prompts("quality", "test"):
        if record["source_task"] == "compose":
            parsed = parse_compose_prompt(record["prompt"])
            assert (parsed["include"], parsed.get("exclude"), parsed["tag"]) == (
                record["include"], record.get("exclude"), record["tag"])
    for record in load_prompts("prefer", "test"):  # the subject's clauses; a number also asks for an exact count
        assert parse_compose_prompt(record["prompt"])["include"] == record["include"]


def test_parts_combine_beyond_the_generated_categories() -> None:
    parsed = parse_compose_prompt("  A photo of an ORANGE triangle  above a blue circle ")
    assert parsed["include"] == [{"class": "circle", "count": 1, "color": "blue"},
                                 {"class": "triangle", "count": 1, "color": "orange", "position": ["above", 0]}]
    assert "tag" not in parsed and "exclude" not in parsed
    parsed = parse_compose_prompt("two squares and a circle")
    assert parsed["exclude"] == [{"class": "square", "count": 3}] and "tag" not in parsed
    for example in EXAMPLES:
        assert parse_compose_prompt(example)["include"]


@pytest.mark.parametrize(("prompt", "message"), [
    ('a sign that says "HAT"', "is not an object such as 'a red circle'"),
    ("a photo of a hexagon", "shapes: circle, square, triangle"),
    ("a photo of a circle and a square and a triangle", "joins more than two objects"),
    ("a photo of a circle left of a square and a triangle", "joins more than two objects"),
    ("a photo of two circles left of a square", "holds between single objects"),
    ("a photo of a red circle and a blue circle", "names the circle twice"),
    ("", "is not a composition prompt"),
])
def test_other_prompts_are_refused_with_the_reason(prompt: str, message: str) -> None:
    with pytest.raises(NotACompositionPrompt, match=message):
        parse_compose_prompt(prompt)
    assert issubclass(NotACompositionPrompt, ValueError)  # the CLI's clean exit message covers it
