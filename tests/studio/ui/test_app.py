"""The Gradio app serves its Generate page and answers the `generate` API over HTTP."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def app_url(small_model):
    from flowopd_studio.ui import build_app
    from flowopd_studio.ui.state import AppState

    demo = build_app(AppState(small_model, "small random"))
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield demo.local_url
    demo.close()


def test_generate_endpoint_returns_images_and_scores(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    gallery, scores = client.predict('a sign that says "HAT"', 5, 2, 3.0, 2, api_name="/generate")
    assert len(gallery) == 2
    assert [row[0] for row in scores["data"]] == [5, 6]  # one row per seed
    assert scores["headers"] == ["seed", "compose", "text", "prefer", "quality"]
    text_scores = [row[2] for row in scores["data"]]
    assert all(0.0 <= s <= 1.0 for s in text_scores)
    assert all(row[1] == "n/a: not a composition prompt" for row in scores["data"])  # no clauses to judge


def test_generate_same_seed_same_image(small_model):
    from flowopd_studio.ui.generate_tab import run_generate
    from flowopd_studio.ui.state import AppState

    state = AppState(small_model, "small random")
    first, _ = run_generate(state, "a photo of three circles", 3, 2, 3.0, 1)
    second, _ = run_generate(state, "a photo of three circles", 3, 2, 3.0, 1)
    assert first[0][0].tobytes() == second[0][0].tobytes()
    _, rows = run_generate(state, "a photo of three circles", 3, 2, 3.0, 1)
    assert isinstance(rows[0][1], float)  # a compose prompt is judged by the detector


def test_compose_cell_judges_any_composition_prompt_and_notes_the_others():
    """The page's own example prompt, outside the prompt sets, gets a compose score; a text prompt a note."""
    import random

    from flowopd.world.grammar import parse_compose_prompt
    from flowopd.world.prompts import scene_for
    from flowopd.world.scene import Scene, render
    from flowopd_studio.services.scores import NOT_COMPOSITION, reward_cells

    prompt = "a photo of a red square left of a triangle"
    images = [render(scene_for(parse_compose_prompt(prompt), random.Random(0))), render(Scene())]
    cells = reward_cells(images, prompt)
    assert cells["compose"] == [1.0, 0.0]
    assert all(0.0 <= s <= 1.0 for s in cells["quality"])
    cells = reward_cells(images, 'a sign that says "HAT"')
    assert cells["compose"] == [NOT_COMPOSITION] * 2
    assert all(isinstance(s, float) for s in cells["text"])


def test_empty_prompt_is_a_clear_error(small_model):
    import gradio as gr

    from flowopd_studio.ui.generate_tab import run_generate
    from flowopd_studio.ui.state import AppState

    with pytest.raises(gr.Error, match="Prompt is empty"):
        run_generate(AppState(small_model, "small random"), "   ", 0, 2, 3.0, 1)


def test_the_generate_api_names_its_parameters(app) -> None:
    client, _ = app
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert [p["parameter_name"] for p in api["/generate"]["parameters"]] == ["prompt", "seed", "steps", "guidance",
                                                                            "count"]
