"""Teachers without Gradio: presets, the config form, base models, defining a teacher (a queued grpo run and a
teachers row), importing a LoRA (detection, refusal of a mismatched one, a quick eval run)."""

from __future__ import annotations

import json
import shutil

import pytest

BUILTIN = None


def _base():
    from flowopd_studio.services.base_models import BaseModel

    return BaseModel("tiny-base", None, "tiny")


def test_presets_are_valid_for_every_kind_and_quick_is_small():
    from flowopd.config.presets import PRESET_NAMES, preset
    from flowopd.methods.grpo.config import GRPOConfig
    from flowopd.methods.opd.config import OPDConfig

    teachers = {"compose": "a", "text": "b", "prefer": "c"}
    for name in PRESET_NAMES:
        assert isinstance(preset("grpo", name), GRPOConfig)
        assert isinstance(preset("opd", name, teachers=teachers), OPDConfig)
        preset("coldstart", name, teachers=teachers)
    quick, default = preset("grpo", "quick"), preset("grpo", "default")
    assert quick.epochs * quick.batch_size == 512 < default.epochs * default.batch_size
    assert default == GRPOConfig() and preset("grpo", "paper") == GRPOConfig.sd35_medium()
    with pytest.raises(ValueError, match="preset 'huge' is unknown"):
        preset("grpo", "huge")


def test_form_fields_come_from_describe_and_errors_name_the_field():
    from flowopd.methods.grpo.config import GRPOConfig
    from flowopd_studio.services.config_forms import (
        TEACHER_OWN,
        build_config,
        form_fields,
        parse_weights,
        preset_values,
        teacher_algorithms,
    )

    assert teacher_algorithms() == ["grpo", "nft", "awm", "sft"]  # kinds with a config and a stage
    names = [f.name for f in form_fields("grpo", TEACHER_OWN)]
    assert "epochs" in names and "rewards" not in names and len(names) == len(GRPOConfig.describe()) - 4
    values = preset_values("grpo", "quick", TEACHER_OWN)
    assert values["epochs"] == 8 and json.loads(values["adam_betas"]) == [0.9, 0.999]
    cfg = build_config("grpo", {**values, "epochs": 3.0}, {"rewards": {"text": 1.0}}, "Teacher settings")
    assert cfg["epochs"] == 3 and cfg["rewards"] == {"text": 1.0}
    with pytest.raises(ValueError, match=r"Teacher settings: group_size=3 is invalid: it must divide batch_size"):
        build_config("grpo", {**values, "group_size": 3}, {}, "Teacher settings")
    with pytest.raises(ValueError, match="adam_betas is not valid JSON"):
        build_config("grpo", {**values, "adam_betas": "[0.9,"}, {}, "Teacher settings")
    assert parse_weights("text=1, compose:0.5", "Rewards", ["text", "compose"]) == {"text": 1.0, "compose": 0.5}
    with pytest.raises(ValueError, match="Rewards: 'ocr' is unknown"):
        parse_weights("ocr=1", "Rewards", ["text"])
    real = lambda name: name.startswith(("ocr", "pickscore", "remote:"))  # noqa: E731
    assert parse_weights("ocr, pickscore:/models/ps=0.5, remote:http://127.0.0.1:8000, text:2", "Rewards", ["text"],
                         accepts=real) == {"ocr": 1.0, "pickscore:/models/ps": 0.5, "remote:http://127.0.0.1:8000": 1.0,
                                           "text": 2.0}


def test_base_model_choice_is_validated_and_stored(store, tmp_path, small_model_dir):
    from flowopd_studio.services.base_models import choose_base, current_base, validate_base

    assert current_base(store).ref is None  # before a choice: the app's (built-in) model
    base = choose_base(store, "tiny folder", str(small_model_dir))
    assert base.backend == "tiny" and current_base(store) == base
    with pytest.raises(ValueError, match="Base model path .* is not a folder"):
        validate_base("tiny folder", str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="has no model_index.json"):
        validate_base("SD3 folder", str(small_model_dir))
    with pytest.raises(ValueError, match="not in the local Hub cache"):
        validate_base("Hub id (cached)", "nobody/no-such-model")
    assert choose_base(store, "built-in tiny", "").ref is None and current_base(store).ref is None


def test_define_teacher_queues_a_grpo_run_and_registers_it(store, spawned):
    from flowopd.config.presets import preset
    from flowopd_studio.services.teachers import TeacherRequest, define_teacher, list_teachers

    cfg = preset("grpo", "quick", rewards={"text": 1.0}, prompt_tasks={"text": 1.0}).to_dict()
    run = define_teacher(store, TeacherRequest("text-quick", "text", "grpo", cfg), _base())
    assert run.stage == "grpo" and run.name == "text-quick" and spawned == [run.id]
    assert run.config["epochs"] == 8 and run.config["model"] is None
    row = store.teacher("text-quick")
    assert (row["source"], row["algorithm"], row["source_run"]) == ("run", "grpo", run.id)
    assert row["path"] == f"runs/{run.id}/adapter" and json.loads(row["config"])["rewards"] == {"text": 1.0}
    store.add_metrics(run.id, [(2, "reward/text", 0.61, 0.0)])
    [listed] = list_teachers(store)
    assert listed["score"] == 0.61 and listed["scores"].endswith("(train)") and listed["status"] == "running"
    with pytest.raises(ValueError, match="Teacher name 'text-quick' is taken"):
        define_teacher(store, TeacherRequest("text-quick", "text", "grpo", cfg), _base())
    with pytest.raises(ValueError, match="Teacher name 'a b' is invalid"):
        define_teacher(store, TeacherRequest("a b", "text", "grpo", cfg), _base())
    assert len(store.list_runs()) == 1  # refused requests submit nothing


def test_import_detects_our_peft_and_diffusers_formats(small_model, make_adapter, tmp_path):
    from safetensors.torch import load_file, save_file

    from flowopd_studio.services.lora_import import check_lora, inspect_lora

    ours = make_adapter(small_model, tmp_path / "ours")
    targets = tuple(small_model.lora_target_modules)
    info = check_lora(inspect_lora(ours, targets), small_model)
    assert (info.format, info.rank, info.alpha, info.problems) == ("ours", 2, 4.0, [])
    assert set(info.target_modules) == set(targets)
    tensors = load_file(str(ours / "pytorch_lora_weights.safetensors"))
    peft = tmp_path / "peft"
    peft.mkdir()
    save_file({f"base_model.model.{k}": v for k, v in tensors.items()}, str(peft / "adapter_model.safetensors"))
    (peft / "adapter_config.json").write_text(json.dumps({"r": 2, "lora_alpha": 8, "base_model_name_or_path": "x"}))
    info = check_lora(inspect_lora(peft, targets), small_model)
    assert (info.format, info.rank, info.alpha, info.base, info.problems) == ("peft", 2, 8.0, "x", [])
    diffusers = tmp_path / "diffusers" / "pytorch_lora_weights.safetensors"
    diffusers.parent.mkdir()
    save_file({f"transformer.{k}": v for k, v in tensors.items()}, str(diffusers))
    info = check_lora(inspect_lora(diffusers, targets), small_model)
    assert (info.format, info.rank, info.alpha, info.problems) == ("diffusers", 2, 2.0, [])


def test_import_refuses_a_mismatched_lora_and_registers_a_good_one(store, spawned, small_model, make_adapter,
                                                                   tmp_path):
    import torch

    from flowopd.models.tiny import TinyConfig, TinyFlowModel
    from flowopd.pretrain import build_tokenizer
    from flowopd_studio.services.lora_import import ImportRefused, import_lora

    torch.manual_seed(1)
    wider = TinyFlowModel(TinyConfig(num_layers=1, num_heads=2, head_dim=8, text_width=32, text_layers=1,
                                     pooled_dim=32), build_tokenizer(24))
    other = make_adapter(wider, tmp_path / "other")
    with pytest.raises(ImportRefused, match=r"does not fit this base model: module .* is 32 -> 32 in the base "
                                            r"model, the LoRA expects 16 -> 16"):
        import_lora(store, small_model, other, "imp", "text", "tiny-base", None)
    assert store.teachers() == [] and spawned == []
    with pytest.raises(ImportRefused, match="neither"):
        import_lora(store, small_model, tmp_path, "imp", "text", "tiny-base", None)
    good = make_adapter(small_model, tmp_path / "good")
    store.add_base_model("tiny-base", "x", "tiny")
    info, eval_id = import_lora(store, small_model, good, "imp", "text", "tiny-base", None)
    row = store.teacher("imp")
    assert (row["source"], row["path"], row["eval_run"]) == ("import", "teachers/imp", eval_id)
    run = store.get_run(eval_id)
    assert run.stage == "eval" and run.config["tasks"] == ["text"] and run.config["limit"] == 8
    assert run.config["adapter"] == str(store.home / "teachers" / "imp") and spawned == [eval_id]
    from flowopd.adapters import drop_adapter, load_adapter

    load_adapter(small_model, store.home / "teachers" / "imp", "imported_check")  # the converted folder loads
    drop_adapter(small_model, "imported_check")
    shutil.rmtree(tmp_path / "good")


def test_only_a_teacher_algorithm_starts_a_teacher_and_a_teacher_can_be_removed(store, spawned) -> None:
    from flowopd_studio.services.teachers import TeacherRequest, define_teacher

    with pytest.raises(ValueError, match="does not train a teacher"):
        define_teacher(store, TeacherRequest("bench", "text", "reproduce", {"budget": "smoke"}), _base())
    assert store.list_runs() == [] and store.teacher("bench") is None  # nothing queued or registered
    run = define_teacher(store, TeacherRequest("t", "text", "grpo", {"rewards": {"text": 1.0},
                                                                    "prompt_tasks": {"text": 1.0}}), _base())
    store.finish(run.id, store.get_run(run.id).pid, "stopped")
    with pytest.raises(Exception, match="remove them"):
        store.delete_run(run.id)  # a registered teacher keeps its run
    assert store.remove_teacher("t") and store.teacher("t") is None
    store.delete_run(run.id)  # now the run can go


def test_an_absurd_teacher_is_refused_with_its_estimate(store, tmp_path) -> None:
    from flowopd_studio.services.teachers import TeacherRequest, define_teacher

    base = _base()
    request = TeacherRequest("huge", "text", "grpo", {"rewards": {"text": 1.0}, "prompt_tasks": {"text": 1.0},
                                                      "batch_size": 1_000_000_000, "group_size": 4})
    with pytest.raises(ValueError, match=r"trains on 40,000,000,000 images, about .* lower epochs or batch_size"):
        define_teacher(store, request, base, spawn=lambda home, run_id: 1)
    assert store.list_runs() == [] and store.teachers() == []  # nothing queued, nothing registered


def test_a_teacher_whose_run_stopped_is_not_offered_to_a_distillation(store) -> None:
    from flowopd_studio.services.teachers import TeacherRequest, define_teacher, list_teachers, teachers_by_task

    config = {"rewards": {"text": 1.0}, "prompt_tasks": {"text": 1.0}, "epochs": 2}
    run = define_teacher(store, TeacherRequest("will-stop", "text", "grpo", config), _base(),
                         spawn=lambda home, run_id: 1)
    assert "will-stop" in teachers_by_task(store)["text"]  # queued or running: it will write its adapter
    run = store.get_run(run.id)
    assert store.finish(run.id, run.pid, "stopped", None)  # as its worker ends it after a stop
    assert "will-stop" not in teachers_by_task(store)["text"]
    assert [t["status"] for t in list_teachers(store) if t["name"] == "will-stop"] == ["stopped"]  # still listed


def test_import_keeps_layers_beyond_the_models_lora_targets(store, spawned, small_model, tmp_path):
    """A LoRA that also adapts an MLP layer (as many community SD3 LoRAs do) imports whole: distillation loads it
    and the merge cold start merges on the union of the teachers' layers."""
    import torch

    from flowopd.adapters import adapter_parameters, add_lora, load_adapter, save_adapter, use_adapter
    from flowopd_studio.services.lora_import import import_lora

    targets = (*small_model.lora_target_modules, "ff.net.2")
    add_lora(small_model, "wide", 2, 4.0, targets)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in adapter_parameters(small_model, "wide").values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    folder = save_adapter(small_model, "wide", tmp_path / "wide")
    store.add_base_model("tiny-base", "x", "tiny")
    info, _ = import_lora(store, small_model, folder, "wide-imp", "text", "tiny-base", None)
    assert any(t.endswith("ff.net.2") for t in info.target_modules) and info.zero_filled == []
    load_adapter(small_model, store.path(store.teacher("wide-imp")["path"]), "imported")
    x = torch.randn(2, *small_model.latent_shape, generator=g)
    with torch.no_grad():
        cond = small_model.encode_prompts(["a red circle", "a sign"])
        with use_adapter(small_model, "wide"):
            want = small_model.velocity(x, 0.5, cond)
        with use_adapter(small_model, "imported"):
            torch.testing.assert_close(small_model.velocity(x, 0.5, cond), want)
