"""Compare, Export and Results through the API (gradio_client), on the small model with a built-in examples
folder made of its adapters: compare, the page-load grid, save and download, export and download, refusals."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def app(small_model, examples_dir, tmp_path_factory):
    """The Compare, Export and Results tabs served on the small model; returns (url, state)."""
    import gradio as gr

    from flowopd_studio.services import examples
    from flowopd_studio.ui import compare_tab, export_tab, results_tab
    from flowopd_studio.ui.state import AppState

    mp = pytest.MonkeyPatch()
    mp.setattr(examples, "EXAMPLES_DIR", examples_dir)
    state = AppState(small_model, "small random", home=tmp_path_factory.mktemp("home"))
    with gr.Blocks() as demo:
        with gr.Tabs() as tabs:
            for module in (compare_tab, export_tab, results_tab):
                with gr.Tab(module.__name__):
                    widgets = module.render(state)
                module.listen(widgets, state, demo=demo, tabs=tabs)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    yield demo.local_url, state
    demo.close()
    mp.undo()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app[0], verbose=False)


def test_compare_endpoint_gives_grid_scores_and_means(client):
    keys = ["base", "example:teacher-text", "example:opd"]
    grid, scores, means, note = client.predict('a sign that says "HAT"\na photo of three circles', "the prompts above",
                                               2, "0, 1", 2, 3.0, keys, api_name="/compare")
    assert grid.endswith(".png")
    assert scores["headers"] == ["prompt", "seed", "reward", "base", "teacher-text", "opd"]
    assert len(scores["data"]) == 2 * 2 * 4  # prompts x seeds x rewards
    marked = [row for row in scores["data"] if any(str(c).endswith(" *") for c in row[3:])]
    assert marked  # the best of a line is marked
    assert [row[0] for row in means["data"]] == ["base", "teacher-text", "opd"]
    assert means["headers"][-1] == "average" and "built-in example" in note


def test_compare_from_a_task_set(client):
    _, scores, means, _ = client.predict("", "text", 3, "0", 2, 3.0, ["base"], api_name="/compare")
    assert {row[0] for row in scores["data"]} == {p for p in {row[0] for row in scores["data"]}} and \
        len({row[0] for row in scores["data"]}) == 3
    assert means["data"][0][2:4] == ["n/a", means["data"][0][3]] and means["data"][0][3] != "n/a"  # text only


def test_compare_refuses_bad_input(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="Seeds"):
        client.predict("a photo of a circle", "the prompts above", 1, "x", 2, 3.0, ["base"], api_name="/compare")
    with pytest.raises(AppError, match="Models is empty"):
        client.predict("a photo of a circle", "the prompts above", 1, "0", 2, 3.0, [], api_name="/compare")
    with pytest.raises(AppError, match="not in the list of choices"):  # gradio checks the choices
        client.predict("a photo of a circle", "the prompts above", 1, "0", 2, 3.0, ["run:r0000000000"],
                       api_name="/compare")


def test_page_load_grid_shows_base_teachers_merge_and_student(client):
    start = time.perf_counter()
    grid, scores, means, note = client.predict(api_name="/compare_default")
    first = time.perf_counter() - start
    assert scores["headers"][3:] == ["base", "teacher-compose", "teacher-text", "teacher-prefer", "teacher-quality",
                                     "coldstart-merge", "opd"]
    assert len(means["data"]) == 7 and "test fixture" in note
    from flowopd_studio.services.compare import default_items

    shown = [row[0] for row in scores["data"]]
    assert len(default_items()) == 4 and all(any(i.prompt in p for p in shown) for i in default_items())
    start = time.perf_counter()
    again = client.predict(api_name="/compare_default")
    assert again[2] == means and time.perf_counter() - start < first + 1  # cached after the first load


def test_save_grid_writes_exports_and_downloads(client, app):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    grid, *_ = client.predict("a photo of a circle", "the prompts above", 1, "0", 2, 3.0, ["base"],
                              api_name="/compare")
    with pytest.raises(AppError, match="not a plain name"):
        client.predict(handle_file(grid), "../escape.png", ["base"], api_name="/save_grid")
    download, note = client.predict(handle_file(grid), "my-grid", ["base", "example:opd"], api_name="/save_grid")
    saved = app[1].data_folder / "exports" / "my-grid.png"
    assert saved.is_file() and "exports/my-grid.png" in note
    assert open(download, "rb").read() == saved.read_bytes()
    assert not (app[1].data_folder.parent / "escape.png").exists()
    # An export's model card shows only a saved grid that has the exported adapter as a column.
    _, _, card = client.predict("example:opd", "", ["flowopd"], True, api_name="/export")
    assert "comparison.png" in card
    _, _, card = client.predict("example:teacher-text", "", ["flowopd"], True, api_name="/export")
    assert "comparison.png" not in card


def test_export_and_download_a_verified_zip(client, app):
    from gradio_client.exceptions import AppError

    download, status, card = client.predict("example:opd", "", ["flowopd"], True, api_name="/export")
    assert "**Ready**" in status and "Verified" in status
    with zipfile.ZipFile(download) as z:
        names = set(z.namelist())
        readme = z.read("opd/README.md").decode()
    assert {"opd/flowopd/pytorch_lora_weights.safetensors", "opd/flowopd/adapter.json", "opd/export.json"} <= names
    assert "small random" in readme and "test fixture, stage opd" in readme and readme.strip() == card.strip()
    assert (app[1].data_folder / "exports" / "opd.zip").is_file()
    with pytest.raises(AppError, match="not a plain name"):
        client.predict("example:opd", "../../escape", ["flowopd"], False, api_name="/export")
    with pytest.raises(AppError, match="not in the list"):
        client.predict("base", "", ["flowopd"], False, api_name="/export")


def test_results_show_the_committed_reproduction(client):
    titles = client.view_api(print_info=False, return_format="dict")  # the endpoint is public
    assert "/results_show" in titles["named_endpoints"]
    table, chart, retention, plots, report = client.predict("committed reproduction (docs/results-tiny.md)",
                                                            api_name="/results_show")
    assert table["headers"][0] == "row" and table["data"][0][0] == "base"
    assert len(plots) >= 5 and "reproduction report" in report
    assert chart and chart.endswith(".png")  # the trade-off view: every row's four task scores
    data = json.loads((ROOT / "docs" / "results-tiny.json").read_text())  # the committed run's figures
    rows, kept = data["rows"], data["retention"]["text"]  # the report's retention: per seed, then mean ± std
    gain = rows["teacher-text"]["text"] - rows["base"]["text"]
    assert f"`text`: opd keeps {kept['mean']:.2f} ± {kept['std']:.2f} (seeds: " in retention
    assert f"of `teacher-text`'s {gain:+.3f}" in retention and "mean ± std over seeds" in retention


def test_the_prompts_box_starts_with_the_page_load_prompts(small_model, tmp_path):
    import gradio as gr

    from flowopd_studio.services.compare import default_items
    from flowopd_studio.ui import compare_tab
    from flowopd_studio.ui.state import AppState

    with gr.Blocks():
        widgets = compare_tab.render(AppState(small_model, "small random", home=tmp_path / "home"))
    assert widgets.prompts.value.splitlines() == [i.prompt for i in default_items()]


def test_the_api_names_its_parameters(client):
    """gradio_client and the "Use via API" page show the fields' names, not param_0 ... param_6."""
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    names = [p["parameter_name"] for p in api["/compare"]["parameters"]]
    assert names == ["prompts", "prompt_set", "count", "seeds", "steps", "guidance", "keys", "own_guidance"]

