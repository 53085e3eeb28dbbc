"""The renderer: deterministic bytes, any size from 16 px, validation of scene objects."""

from __future__ import annotations

import numpy as np
import pytest

from flowopd.world.scene import IMAGE_SIZE, PALETTE, Scene, SceneObject, render, render_array

SCENE = Scene((SceneObject("circle", "red", "big", 0.3, 0.4), SceneObject("triangle", "blue", "small", 0.75, 0.7)))
WORD = Scene(text="TEA")


@pytest.mark.parametrize("scene", [SCENE, WORD, Scene()], ids=["shapes", "word", "empty"])
def test_render_is_deterministic(scene: Scene) -> None:
    a, b = render(scene), render(scene)
    assert a.mode == "RGB" and a.size == (IMAGE_SIZE, IMAGE_SIZE)
    assert a.tobytes() == b.tobytes()


def test_equal_scenes_render_equal_and_different_scenes_differ() -> None:
    copy = Scene(tuple(SCENE.objects), meta={"ignored": True})  # meta does not take part in equality
    assert copy == SCENE
    assert render(copy).tobytes() == render(SCENE).tobytes()
    moved = Scene((SceneObject("circle", "red", "big", 0.6, 0.4), SCENE.objects[1]))
    assert render(moved).tobytes() != render(SCENE).tobytes()


@pytest.mark.parametrize("size", [16, 24, 32, 48, 64, 96])
def test_other_sizes(size: int) -> None:
    image = render(SCENE, size)
    assert image.size == (size, size)
    assert render(SCENE, size).tobytes() == image.tobytes()
    arr = np.asarray(image)
    # The background stays the background and the red circle's centre is red at every size.
    assert tuple(arr[0, 0]) == SCENE.background
    red = arr[int(0.4 * size), int(0.3 * size)].astype(int)
    assert np.abs(red - PALETTE["red"]).max() <= 2


@pytest.mark.parametrize("size", [15, 8, 0])
def test_too_small_raises(size: int) -> None:
    with pytest.raises(ValueError, match="too small"):
        render(SCENE, size)


def test_render_array_batches_renders() -> None:
    batch = render_array([SCENE, WORD], 48)
    assert batch.shape == (2, 48, 48, 3) and batch.dtype == np.uint8
    assert np.array_equal(batch[1], np.asarray(render(WORD, 48)))


def test_text_is_dark_ink_on_the_background() -> None:
    arr = np.asarray(render(WORD)).astype(int)
    assert (arr.mean(-1) < 100).sum() > 10  # there is ink
    assert (arr.mean(-1) > 230).mean() > 0.5  # mostly background


@pytest.mark.parametrize("kwargs, field", [
    ({"shape": "hexagon"}, "shape"), ({"color": "pink"}, "color"), ({"size": "huge"}, "size"),
])
def test_scene_object_rejects_unknown_values(kwargs: dict, field: str) -> None:
    args = {"shape": "circle", "color": "red", "size": "big", "cx": 0.5, "cy": 0.5, **kwargs}
    with pytest.raises(ValueError, match=field):
        SceneObject(**args)
