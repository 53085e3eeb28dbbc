"""A training method registered in one place shows on every surface: ``flowopd train --help`` and ``train
<kind>``, ``flowopd config``, ``runs submit``, ``--record``, the store's stages and the app's teacher form."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from flowopd.config.base import CONFIGS, ConfigBase, option
from flowopd.methods import Flag, Method, get_method, methods, register_method, unregister_method


def train_toy(model, cfg, out_dir, *, callback=None, resume=True, accelerator=None):
    from flowopd.adapters import add_lora, save_adapter
    from flowopd.training.loop import TrainResult

    add_lora(model, cfg.adapter_name, 2, 2.0, seed=cfg.seed)
    adapter = save_adapter(model, cfg.adapter_name, Path(out_dir) / "adapter")
    (Path(out_dir) / "toy.json").write_text(json.dumps(cfg.to_dict()))
    return TrainResult(adapter, None, cfg.steps, 1, False, {})


def toy_config() -> type[ConfigBase]:
    """The toy's config class, defined (and so registered as kind "toy") only while a test uses it."""

    @dataclass
    class ToyConfig(ConfigBase, kind="toy"):
        """A method that trains nothing: it writes its config and an adapter folder."""

        model: str | None = option(None, "base model; None = built-in", group="toy")
        seed: int = option(0, "random seed", min=0, group="toy")
        steps: int = option(3, "how many steps it pretends to take", min=1, group="toy")
        prompt_tasks: dict = option({"text": 1.0}, "task -> weight", group="toy")
        adapter_name: str = option("teacher", "adapter name", group="toy")
        eval_steps: int = option(2, "ODE steps of previews", min=1, group="toy")
        guidance: float = option(1.0, "CFG scale", min=0, group="toy")

        def total_steps(self) -> int:
            return self.steps

    return ToyConfig


@pytest.fixture
def toy():
    method = register_method(Method(kind="toy", summary="A toy method that trains nothing.", config=toy_config(),
                                    trainer=train_toy, example="flowopd train toy --out runs/toy",
                                    flags=(Flag("steps", int),)))
    yield method
    unregister_method("toy")
    CONFIGS.pop("toy")  # the other tests see the built-in kinds only


def test_the_built_in_methods_are_registered_in_order() -> None:
    assert list(methods()) == ["grpo", "nft", "awm", "sft", "opd"]
    assert [k for k, m in methods().items() if m.teacher_source] == ["grpo", "nft", "awm", "sft"]
    for kind, method in methods().items():
        assert CONFIGS[kind] is method.config
    with pytest.raises(ValueError, match="unknown training method 'dpo': use one of grpo, nft"):
        get_method("dpo")


def test_a_method_needs_a_config_of_its_own_kind() -> None:
    with pytest.raises(ValueError, match="declare it with kind='nope'"):
        Method(kind="nope", summary="", config=toy_config(), trainer=train_toy)
    with pytest.raises(ValueError, match="must be 'module:function'"):
        Method(kind="toy", summary="", config=CONFIGS["toy"], trainer="no_colon")
    CONFIGS.pop("toy")


def test_a_toy_method_shows_in_the_cli_config_and_record(toy, cli, tmp_path: Path) -> None:
    code, out, _ = cli("train", "--help")
    assert code == 0 and "toy" in out
    code, out, _ = cli("train", "toy", "--help")
    assert code == 0 and "A toy method that trains nothing." in out and "--steps" in out and "--record" in out
    code, out, _ = cli("config", "toy")
    assert code == 0 and "how many steps it pretends to take" in out
    code, _, err = cli("train", "toy", "--out", tmp_path / "bad", "--steps", "0")
    assert code == 2 and "steps" in err  # checked before any model loads
    code, out, _ = cli("train", "toy", "--out", tmp_path / "run", "--steps", "5")
    assert code == 0 and "toy: step 5" in out
    assert json.loads((tmp_path / "run" / "toy.json").read_text())["steps"] == 5
    assert (tmp_path / "run" / "adapter").is_dir()


def test_a_toy_method_is_a_store_stage_and_a_teacher_in_the_app(toy, cli, tmp_path: Path) -> None:
    from flowopd_studio.services.config_forms import preset_values, teacher_algorithms
    from flowopd_studio.storage.queue import submit
    from flowopd_studio.storage.stages import get_stage
    from flowopd_studio.storage.store import Store

    code, out, _ = cli("runs", "submit", "--help")
    assert code == 0 and "toy: A toy method that trains nothing." in out
    store = Store(tmp_path / "home")
    run = submit(store, "toy", {"steps": 4}, start=False)
    assert store.get_run(run.id).config["steps"] == 4 and get_stage("toy").name == "toy"
    with pytest.raises(ValueError, match="steps=0 is invalid"):
        submit(store, "toy", {"steps": 0}, start=False)
    assert "toy" in teacher_algorithms()
    assert preset_values("toy", "default")["steps"] == 3  # the teacher form's fields
