"""A fully fine-tuned student (``student_params`` full): a weight delta on every Linear layer of the transformer,
held as an adapter whose A factors are fixed identities, so B is the weight delta and its gradient the weight's."""

from __future__ import annotations

import json

import pytest
import torch

from flowopd.adapters import (
    META_NAME,
    AdapterError,
    adapter_deltas,
    add_full_delta,
    identity_factors,
    is_full_delta,
    linear_layers,
    load_adapter,
    lora_layers,
    merged_adapter,
    save_adapter,
    trainable_parameters,
    use_adapter,
)
from flowopd.methods.opd.trainer import train_opd

PROMPTS = ["a red circle", "two blue squares", "a green triangle", "a photo of a square"]


def _velocity(model, name, x, cond):
    with torch.no_grad(), use_adapter(model, name):
        return model.velocity(x, 0.6, cond)


@pytest.fixture
def state(tiny):
    model = tiny()
    torch.manual_seed(3)
    with torch.no_grad():
        cond = model.encode_prompts(PROMPTS)
    return model, torch.randn(len(PROMPTS), *model.latent_shape), cond


def test_a_full_delta_starts_at_its_init_and_round_trips(state, make_teachers, tmp_path):
    model, x, cond = state
    teacher = make_teachers(model, {"compose": 1})["compose"]
    load_adapter(model, teacher, "teacher")
    add_full_delta(model, "zero")
    add_full_delta(model, "full", adapter_deltas(model, "teacher"))

    torch.testing.assert_close(_velocity(model, "zero", x, cond), _velocity(model, None, x, cond))
    torch.testing.assert_close(_velocity(model, "full", x, cond), _velocity(model, "teacher", x, cond))
    adapted = {n for n, m in lora_layers(model).items() if "full" in m.lora_A}
    assert adapted == set(linear_layers(model)) and len(adapted) > len(model.lora_target_modules)
    assert is_full_delta(model, "full") and not is_full_delta(model, "teacher")

    folder = save_adapter(model, "full", tmp_path / "full")
    meta = json.loads((folder / META_NAME).read_text())
    assert set(meta["rank_pattern"].values()) == set(linear_layers(model).values())  # each layer's own width
    load_adapter(model, folder, "again")
    assert is_full_delta(model, "again")
    # the loaded copy's A are plain Linear layers: the same velocity as the identity shortcut, and merged too
    loaded = _velocity(model, "again", x, cond)
    torch.testing.assert_close(loaded, _velocity(model, "full", x, cond))
    with torch.no_grad(), merged_adapter(model, "full"):
        torch.testing.assert_close(model.velocity(x, 0.6, cond), loaded)
    with pytest.raises(AdapterError, match="already exists"):
        add_full_delta(model, "full")
    with pytest.raises(AdapterError, match="layers this model lacks"):
        add_full_delta(model, "bad", {"no.such.layer": torch.zeros(1, 1)})
    layer = next(iter(linear_layers(model)))
    with pytest.raises(AdapterError, match=f"init delta of {layer} has shape \\(1, 1\\)"):
        add_full_delta(model, "bad", {layer: torch.zeros(1, 1)})
    assert "bad" not in model.transformer.peft_config  # a refusal leaves no half-made adapter


def test_the_delta_s_gradient_is_the_weight_s_gradient(state):
    model, x, cond = state
    add_full_delta(model, "full")
    params = trainable_parameters(model, "full")
    layers = lora_layers(model)
    for layer in layers.values():
        layer.base_layer.weight.requires_grad_(True)  # the base weight too: both get dL/dW_eff
    with use_adapter(model, "full"):
        (model.velocity(x, 0.6, cond) ** 2).mean().backward()

    assert len(params) == 2 * len(layers)
    for name, layer in layers.items():
        torch.testing.assert_close(layer.lora_B["full"].weight.grad, layer.base_layer.weight.grad, msg=name)
    assert any(layer.base_layer.weight.grad.abs().sum() > 0 for layer in layers.values())


def test_a_full_student_trains_every_linear_layer_from_its_init(tiny, make_teachers, opd_config, tmp_path):
    model = tiny()
    teachers = make_teachers(model, {"compose": 1, "prefer": 2})
    load_adapter(model, teachers["compose"], "init")
    init = adapter_deltas(model, "init")
    cfg = opd_config(teachers, epochs=2, lr=1e-3, student_params="full", init=teachers["compose"], beta_mar=0.0)
    seen = []
    train_opd(model, cfg, tmp_path / "run", callback=seen.append)

    assert is_full_delta(model, "student")  # the identities did not move
    assert not any(p.requires_grad for p in identity_factors(model, "student"))
    deltas = adapter_deltas(model, "student")
    moved = [n for n in linear_layers(model) if not torch.allclose(deltas[n], init.get(n, torch.zeros_like(deltas[n])))]
    assert set(moved) - set(init), "layers outside the init's targets train too"
    # Every layer trains but the one block's context queries, which feed only its discarded context output.
    assert set(linear_layers(model)) - set(moved) == {"transformer_blocks.0.attn.add_q_proj"}
    assert seen[-1]["kl/teacher"] < seen[0]["kl/teacher"]
    fresh = tiny()
    load_adapter(fresh, tmp_path / "run" / "adapter", "student")  # the saved student loads like any adapter
    assert is_full_delta(fresh, "student")


def test_a_full_student_resumes_to_the_same_weights(tiny, make_teachers, opd_config, tmp_path):
    def run(folder, epochs):
        model = tiny()
        cfg = opd_config(teachers, epochs=epochs, lr=1e-3, student_params="full", beta_mar=0.0)
        train_opd(model, cfg, folder)
        return adapter_deltas(model, "student")

    teachers = make_teachers(tiny(), {"compose": 1})
    straight = run(tmp_path / "straight", 2)
    run(tmp_path / "resumed", 1)
    resumed = run(tmp_path / "resumed", 2)  # from the first run's checkpoint
    assert set(resumed) == set(straight)
    for layer, delta in straight.items():
        torch.testing.assert_close(resumed[layer], delta, msg=layer)
