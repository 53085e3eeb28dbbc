"""The Models & teachers tab over HTTP (gradio_client): define a teacher and start its run (no real worker:
the queue's spawn is replaced), import a LoRA, and bad input answered by an error naming the field."""

from __future__ import annotations

import json

import pytest


def _form(name: str, **changes) -> list:
    """The teacher form's values for a GRPO teacher: every algorithm's settings widgets are inputs (hidden
    groups), so each gets its quick preset; ``changes`` apply to GRPO's."""
    from flowopd_studio.services.config_forms import TEACHER_OWN, preset_values, teacher_algorithms
    from flowopd_studio.ui.config_form import form_order

    values = []
    for algorithm in teacher_algorithms():
        preset = {**preset_values(algorithm, "quick", TEACHER_OWN), **(changes if algorithm == "grpo" else {})}
        values += [preset[f] for f in form_order(algorithm, TEACHER_OWN)]
    return [name, "text", "text=1", "text=1", "grpo", *values]


def test_define_a_teacher_and_start_its_run(app, spawned):
    from flowopd_studio.storage.store import Store

    client, home = app
    request, cli = client.predict(*_form("text-quick", epochs=3), api_name="/teacher_config")
    assert json.loads(request)["config"]["epochs"] == 3
    assert "flowopd runs" in cli and "submit grpo --config text-quick.json --name text-quick" in cli
    status = client.predict(request, api_name="/start_teacher")
    table, _ = client.predict(api_name="/refresh_teachers")
    assert "text-quick" in status and len(spawned) == 1
    assert table["data"][0][:5] == ["text-quick", "text", "grpo", 3.0, "run"]  # guidance: its run's config's
    with Store(home) as store:
        run = store.get_run(spawned[0])
        assert (run.stage, run.config["epochs"], run.config["rewards"]) == ("grpo", 3, {"text": 1.0})
        assert store.teacher("text-quick")["source_run"] == run.id


def test_bad_input_gets_an_error_naming_the_field(app, spawned):
    from gradio_client.exceptions import AppError

    client, _ = app
    with pytest.raises(AppError, match="Teacher name 'bad name' is invalid"):
        client.predict(*_form("bad name"), api_name="/teacher_config")
    with pytest.raises(AppError, match="group_size=3 is invalid: it must divide batch_size"):
        client.predict(*_form("ok", group_size=3), api_name="/teacher_config")
    args = _form("ok")
    args[2] = "clipscore=1"
    with pytest.raises(AppError, match="Reward\\(s\\): 'clipscore' is unknown"):
        client.predict(*args, api_name="/teacher_config")
    with pytest.raises(AppError, match="Base model path .* is not a folder"):
        client.predict("tiny folder", "/no/such/folder", api_name="/choose_base")
    assert spawned == []


def test_import_a_lora_and_refuse_a_missing_one(app, spawned, small_model, make_adapter, tmp_path):
    from gradio_client.exceptions import AppError

    client, _ = app
    folder = make_adapter(small_model, tmp_path / "lora")
    text = client.predict(str(folder), api_name="/inspect_lora")
    assert "format **ours**, rank 2" in text and "fits the app's model" in text
    status = client.predict(str(folder), "imported", "prefer", api_name="/import_lora")
    table, _ = client.predict(api_name="/refresh_teachers")
    assert "Imported **imported**" in status and len(spawned) == 1  # its quick evaluation
    assert table["data"][0][:5] == ["imported", "prefer", "import", None, "import"]  # no guidance of its own
    with pytest.raises(AppError, match="LoRA path .* does not exist"):
        client.predict(str(tmp_path / "missing"), "other", "text", api_name="/import_lora")


def test_a_refused_import_marks_its_message_not_the_teachers_table(app) -> None:
    """A refused import's error lands on the import's message; the table is not an output of the refused event,
    so it keeps its rows (it used to show a red "Error" badge until the page was reloaded)."""
    client, _ = app
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    returns = api["/import_lora"]["returns"]
    assert len(returns) == 1 and returns[0]["component"] == "Markdown", returns  # the message alone


def test_an_sft_teacher_request_carries_no_rewards(small_model, tmp_path) -> None:
    """The teacher form's rewards and prompt set go only to algorithms that have them (SFT learns an image set)."""
    import json

    from flowopd_studio.ui.models_tab import teacher_request
    from flowopd_studio.ui.state import AppState

    state = AppState(small_model, "small random", home=tmp_path / "home")
    data = tmp_path / "set"
    data.mkdir()
    request, cli = teacher_request(state, [("sft", "data"), ("sft", "steps")], "style", "text", "text=1", "text=1",
                                   "sft", str(data), 20)
    config = json.loads(request)["config"]
    assert config["data"] == str(data) and config["steps"] == 20
    assert "rewards" not in config and "prompt_tasks" not in config and "sft" in cli


def test_an_import_for_another_base_than_the_app_serves_is_refused(small_model, small_model_dir, tmp_path) -> None:
    from flowopd_studio.services import base_models
    from flowopd_studio.ui.models_tab import import_lora
    from flowopd_studio.ui.state import AppState

    state = AppState(small_model, "small random", home=tmp_path / "home")
    with state.store() as store:
        base_models.choose_base(store, "tiny folder", str(small_model_dir))  # new runs train on another model
    with pytest.raises(ValueError, match="imports are checked against the model this app serves"):
        import_lora(state, str(tmp_path), "imported", "text")
    with state.store() as store:
        assert store.teachers() == []


def test_a_number_out_of_range_is_refused_by_its_name(app) -> None:
    """Not Gradio's "Value -1 is less than minimum value 1": the config's check, which names the field."""
    from gradio_client.exceptions import AppError

    client, _ = app
    with pytest.raises(AppError, match=r"epochs=-1 is invalid: use a positive integer"):
        client.predict(*_form("bad-epochs", epochs=-1), api_name="/teacher_config")
    with pytest.raises(AppError, match=r"lower epochs or batch_size"):
        request, _ = client.predict(*_form("huge", epochs=100_000_000), api_name="/teacher_config")
        client.predict(request, api_name="/start_teacher")


def test_an_optional_number_is_a_text_box_empty_for_none(app) -> None:
    """A Number widget cannot be empty (None showed as 0 and was refused): optional numbers are text boxes."""
    from gradio_client.exceptions import AppError

    client, _ = app
    request, _ = client.predict(*_form("res-empty", resolution=""), api_name="/teacher_config")
    assert json.loads(request)["config"]["resolution"] is None
    request, _ = client.predict(*_form("res-set", resolution=" 512 "), api_name="/teacher_config")
    assert json.loads(request)["config"]["resolution"] == 512
    with pytest.raises(AppError, match=r"resolution='big' is not a number: write one, or leave it empty"):
        client.predict(*_form("res-bad", resolution="big"), api_name="/teacher_config")


def test_an_sd3_app_shows_its_model_and_defaults_to_real_image_rewards(small_model, tmp_path) -> None:
    """The selector shows the model the app was launched with, and a new teacher's reward follows it."""
    from flowopd_studio.services.base_models import BaseModel, kind_of
    from flowopd_studio.ui.models_tab import base_selector, task_rewards
    from flowopd_studio.ui.state import AppState

    pipeline = tmp_path / "sd35m"
    pipeline.mkdir()
    (pipeline / "model_index.json").write_text("{}")
    state = AppState(small_model, "sd35m", home=tmp_path / "home", model_ref=str(pipeline))
    assert base_selector(state) == ("SD3 folder", str(pipeline))
    assert (task_rewards(state, "text"), task_rewards(state, "prefer")) == ("ocr=1", "pickscore=1")
    tiny = AppState(small_model, "built-in tiny-base", home=tmp_path / "home2")
    assert base_selector(tiny) == ("built-in tiny", "") and task_rewards(tiny, "text") == "text=1"
    assert kind_of(BaseModel("x", "owner/name", "sd3")) == ("Hub id (cached)", "owner/name")


def test_an_uploaded_prompt_set_becomes_the_settings_prompt_sets_and_a_teacher_trains_on_it(app, spawned,
                                                                                            tmp_path) -> None:
    """Upload a Flow-GRPO-layout zip for ``text``: every RL form's prompt_sets names its folder (another task's
    entry kept), and the teacher started from that form carries it."""
    import zipfile

    from gradio_client import handle_file

    archive = tmp_path / "ocr.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train.txt", 'a sign that says "hello"\na mug printed with "tea"\n')
        zf.writestr("test.txt", 'a poster that says "moon"\n')
    client, home = app
    current = {"prefer": str(tmp_path)}
    *values, message = client.predict(handle_file(str(archive)), "ocr", "text", *[json.dumps(current)] * 3,
                                      api_name="/unpack_teacher_prompt_set")
    folder = str(home / "uploads" / "prompt-sets" / "ocr-1")
    assert "2 train and 1 test prompts" in message
    assert [json.loads(v) for v in values] == [{"prefer": str(tmp_path), "text": folder}] * 3  # grpo, nft, awm
    with pytest.raises(Exception, match="no text to draw"):  # a set the run could not use is refused by name
        with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
            zf.writestr("train.txt", "a cat\n")
            zf.writestr("test.txt", "a dog\n")
        client.predict(handle_file(str(tmp_path / "bad.zip")), "bad", "text", "{}", "{}", "{}",
                       api_name="/unpack_teacher_prompt_set")
    request, _ = client.predict(*_form("text-own", prompt_sets=json.dumps({"text": folder})),
                                api_name="/teacher_config")
    assert json.loads(request)["config"]["prompt_sets"] == {"text": folder}
