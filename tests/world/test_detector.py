"""The analytic detector: exact on clean renders of every compose category; judge's strict and partial scores."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from flowopd.world.detector import detect, judge
from flowopd.world.prompts import COMPOSE_TAGS, compose_record, scene_for
from flowopd.world.scene import Scene, SceneObject, render

THREE_CIRCLES = {"prompt": "a photo of three circles", "include": [{"class": "circle", "count": 3}],
                 "exclude": [{"class": "circle", "count": 4}]}


def _circles(n: int) -> Scene:
    spots = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]
    return Scene(tuple(SceneObject("circle", "green", "small", x, y) for x, y in spots[:n]))


def _detect(scene: Scene, size: int = 32):
    return detect(np.asarray(render(scene, size)))


@pytest.mark.parametrize("tag", COMPOSE_TAGS)
def test_exact_on_clean_renders(tag: str) -> None:
    rng = random.Random(f"detector-{tag}")
    for _ in range(30):
        record = compose_record(tag, rng)
        scene = scene_for(record, rng)
        found = _detect(scene)
        assert Counter((d.shape, d.color) for d in found) == Counter((o.shape, o.color) for o in scene.objects), \
            record["prompt"]
        strict, partial = judge(found, record)
        assert strict and partial == 1.0, record["prompt"]


@pytest.mark.parametrize("size", [48, 64])
def test_exact_at_larger_sizes(size: int) -> None:
    rng = random.Random(size)
    for tag in COMPOSE_TAGS:
        record = compose_record(tag, rng)
        scene = scene_for(record, rng)
        found = _detect(scene, size)
        assert sorted((d.shape, d.color) for d in found) == sorted((o.shape, o.color) for o in scene.objects)
        assert judge(found, record)[0]


def test_positions_are_found() -> None:
    scene = Scene((SceneObject("square", "red", "big", 0.25, 0.5), SceneObject("circle", "blue", "big", 0.75, 0.5)))
    square, circle = sorted(_detect(scene), key=lambda d: d.cx)
    assert (square.shape, circle.shape) == ("square", "circle")
    assert square.cx == pytest.approx(0.25, abs=0.04) and circle.cx == pytest.approx(0.75, abs=0.04)
    left = {"include": [{"class": "circle", "count": 1}, {"class": "square", "count": 1, "position": ["left of", 0]}]}
    right = {"include": [{"class": "circle", "count": 1}, {"class": "square", "count": 1, "position": ["right of", 0]}]}
    assert judge(_detect(scene), left) == (True, 1.0)
    strict, partial = judge(_detect(scene), right)
    assert not strict and partial == pytest.approx((1.0 + 0.5) / 2)  # counts right, position wrong


def test_partial_credit_for_an_under_count() -> None:
    strict, partial = judge(_detect(_circles(2)), THREE_CIRCLES)
    assert not strict
    assert partial == pytest.approx(2 / 3)


def test_exclude_clause_fails_an_over_count() -> None:
    found = _detect(_circles(4))
    assert sum(d.shape == "circle" for d in found) == 4
    strict, partial = judge(found, THREE_CIRCLES)
    assert not strict  # the include clause alone (>= 3 circles) would pass
    assert partial == pytest.approx(2 / 3)
    assert judge(_detect(_circles(3)), THREE_CIRCLES) == (True, 1.0)


def test_wrong_color_gets_partial_credit() -> None:
    record = {"include": [{"class": "circle", "count": 1, "color": "red"}]}
    strict, partial = judge(_detect(_circles(1)), record)  # a green circle
    assert not strict and partial == pytest.approx(0.5)


def test_blank_and_text_have_no_objects() -> None:
    assert _detect(Scene()) == []
    assert _detect(Scene(text="HEN")) == []  # dark ink is not a palette colour
    assert judge([], THREE_CIRCLES) == (False, 0.0)
