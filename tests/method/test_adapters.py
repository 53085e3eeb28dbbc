"""One frozen base with named LoRA adapters: switching, training flags, save/load and its refusals."""

from __future__ import annotations

import json

import pytest
import torch

from flowopd.adapters import (
    META_NAME,
    AdapterError,
    adapter_names,
    add_lora,
    base_model_id,
    load_adapter,
    merged_adapter,
    save_adapter,
    trainable_parameters,
    use_adapter,
)


def velocity(model, batch, name):
    x, cond = batch
    with torch.no_grad(), use_adapter(model, name):
        return model.velocity(x, 0.6, cond)


def test_adding_an_adapter_changes_nothing_until_used(model, batch, randomise):
    base = velocity(model, batch, None)
    add_lora(model, "student", rank=4, alpha=8)
    add_lora(model, "teacher", rank=2, alpha=2)
    randomise(model, "teacher")
    x, cond = batch
    with torch.no_grad():
        torch.testing.assert_close(model.velocity(x, 0.6, cond), base)  # add_lora leaves adapters off
    torch.testing.assert_close(velocity(model, batch, "student"), base)  # B = 0 at start
    assert not torch.allclose(velocity(model, batch, "teacher"), base, atol=1e-4)
    torch.testing.assert_close(velocity(model, batch, None), base)
    assert adapter_names(model) == ["student", "teacher"]
    with pytest.raises(AdapterError, match="no adapter named 'ghost'"):
        with use_adapter(model, "ghost"):
            pass
    with pytest.raises(AdapterError, match="already exists"):
        add_lora(model, "student", rank=4, alpha=8)


def test_only_the_trained_adapter_gets_gradients_across_switches(model, batch, randomise):
    add_lora(model, "student", rank=4, alpha=8)
    add_lora(model, "teacher", rank=4, alpha=8)
    randomise(model, "teacher")
    params = trainable_parameters(model, "student")
    assert params and all(p.requires_grad for p in params)
    trainable = [n for n, p in model.transformer.named_parameters() if p.requires_grad]
    assert trainable and all(".student." in n for n in trainable)
    x, cond = batch
    with use_adapter(model, "student"):
        v_s = model.velocity(x, 0.6, cond)
    # peft's set_adapter would freeze the student here; use_adapter must keep its flags
    with torch.no_grad(), use_adapter(model, "teacher"):
        v_t = model.velocity(x, 0.6, cond)
    with torch.no_grad(), use_adapter(model, None):
        model.velocity(x, 0.6, cond)
    ((v_s - v_t) ** 2).mean().backward()
    b_grads = [p.grad for n, p in model.transformer.named_parameters() if ".lora_B.student." in n]
    assert b_grads and all(g is not None for g in b_grads)
    assert sum(float(g.abs().sum()) for g in b_grads) > 0  # (text-query layers of the last block get 0)
    assert all(p.grad is None for n, p in model.transformer.named_parameters() if ".student." not in n)


def test_save_load_round_trip_gives_identical_velocities(model, batch, tmp_path, make_model, randomise):
    add_lora(model, "teacher", rank=4, alpha=12)  # alpha != rank: the scaling must survive the round trip
    randomise(model, "teacher")
    expected = velocity(model, batch, "teacher")
    folder = save_adapter(model, "teacher", tmp_path / "teacher")
    meta = json.loads((folder / "adapter.json").read_text())
    assert meta["rank"] == 4 and meta["alpha"] == 12 and meta["base_model"] == base_model_id(model)
    load_adapter(model, folder, "copy")
    torch.testing.assert_close(velocity(model, batch, "copy"), expected, rtol=0, atol=0)
    fresh = make_model()  # same seed: same base weights, same fingerprint
    load_adapter(fresh, folder, "teacher")
    torch.testing.assert_close(velocity(fresh, batch, "teacher"), expected, rtol=0, atol=0)
    assert not any(p.requires_grad for n, p in fresh.transformer.named_parameters() if ".teacher." in n)


def test_base_model_id_ignores_adapters(model, make_model, randomise):
    before = base_model_id(model)
    add_lora(model, "s", rank=2, alpha=2)
    randomise(model, "s")
    assert base_model_id(model) == before
    assert base_model_id(make_model(seed=1)) != before


def test_load_takes_other_layers_and_refuses_missing_layers_other_base_and_bad_folders(model, tmp_path, make_model,
                                                                                         batch, randomise):
    add_lora(model, "narrow", rank=2, alpha=2, target_modules=("to_q", "to_k"))
    randomise(model, "narrow")
    folder = save_adapter(model, "narrow", tmp_path / "narrow")
    load_adapter(model, folder, "again")  # fewer layers than the model's LoRA targets: loads, same velocity
    torch.testing.assert_close(velocity(model, batch, "again"), velocity(model, batch, "narrow"))
    meta = json.loads((folder / META_NAME).read_text())
    (folder / META_NAME).write_text(json.dumps({**meta, "target_modules": ["to_q", "no_such_layer"]}))
    with pytest.raises(AdapterError, match=r"targets \['no_such_layer'\], which match no Linear layer.*retrain"):
        load_adapter(model, folder, "missing")
    add_lora(model, "full", rank=2, alpha=2)
    full = save_adapter(model, "full", tmp_path / "full")
    with pytest.raises(AdapterError, match="trained on base model"):
        load_adapter(make_model(seed=1), full, "full")
    with pytest.raises(AdapterError, match="not an adapter folder"):
        load_adapter(model, tmp_path, "x")
    with pytest.raises(AdapterError, match=r"target modules \['no_such_layer'\] match no layer"):
        add_lora(model, "nowhere", rank=2, alpha=2, target_modules=("no_such_layer",))


def test_bad_targets_on_a_fresh_model_leave_it_usable(make_model):
    fresh = make_model()
    with pytest.raises(AdapterError, match="match no layer"):
        add_lora(fresh, "nowhere", rank=2, alpha=2, target_modules=("zzz",))
    add_lora(fresh, "ok", rank=2, alpha=2)
    assert adapter_names(fresh) == ["ok"]


def test_merged_adapter_runs_the_adapter_and_restores_the_base_exactly(model, batch, randomise):
    add_lora(model, "student", rank=4, alpha=8)
    add_lora(model, "teacher", rank=2, alpha=2)
    randomise(model, "student", seed=1)
    randomise(model, "teacher", seed=2)
    base_weights = {n: p.detach().clone() for n, p in model.transformer.named_parameters() if ".lora_" not in n}
    flags = {n: p.requires_grad for n, p in model.transformer.named_parameters()}
    x, cond = batch
    through_lora = velocity(model, batch, "teacher")
    with torch.no_grad(), merged_adapter(model, "teacher"):
        merged = model.velocity(x, 0.6, cond)
    torch.testing.assert_close(merged, through_lora, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(merged, velocity(model, batch, "student"), atol=1e-4)
    after = dict(model.transformer.named_parameters())
    assert all(torch.equal(after[n], w) for n, w in base_weights.items())  # bit for bit, not up to rounding
    assert {n: p.requires_grad for n, p in after.items()} == flags
    torch.testing.assert_close(velocity(model, batch, "teacher"), through_lora)
    with pytest.raises(AdapterError, match="no adapter named 'ghost'"):
        with merged_adapter(model, "ghost"):
            pass


def test_merged_adapter_restores_the_base_when_the_body_raises(model, batch, randomise):
    add_lora(model, "teacher", rank=2, alpha=2)
    randomise(model, "teacher")
    base = velocity(model, batch, None)
    with pytest.raises(RuntimeError, match="boom"):
        with merged_adapter(model, "teacher"):
            raise RuntimeError("boom")
    assert torch.equal(velocity(model, batch, None), base)


def test_loading_warns_only_about_the_adapters_own_missing_keys(model, randomise, tmp_path, caplog):
    """diffusers lists another adapter's keys as missing when its name is a substring of them ('b' in
    'transformer_blocks'); a key of the adapter being loaded still warns."""
    from safetensors.torch import load_file, save_file

    from flowopd.adapters import WEIGHTS_NAME

    add_lora(model, "tmp", rank=2, alpha=2)
    randomise(model, "tmp")
    folder = save_adapter(model, "tmp", tmp_path / "full")
    with caplog.at_level("WARNING"):
        load_adapter(model, folder, "a")
        load_adapter(model, folder, "b")
    assert "missing keys" not in caplog.text
    torn = tmp_path / "torn"
    torn.mkdir()
    for f in folder.iterdir():
        (torn / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(torn / WEIGHTS_NAME))
    dropped = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, str(torn / WEIGHTS_NAME))
    with caplog.at_level("WARNING"):
        load_adapter(model, torn, "c")
    assert "missing keys" in caplog.text and ".c." in caplog.text


def test_switching_finds_new_adapters_and_other_targets_after_the_layers_were_cached(model, batch, randomise):
    add_lora(model, "student", rank=4, alpha=8)
    randomise(model, "student")
    with torch.no_grad(), use_adapter(model, "student"):  # caches the LoRA layers of this adapter set
        v_student = velocity(model, batch, "student")
    targets = tuple(model.lora_target_modules)[:1]  # an adapter on fewer layers: other LoRA layers hold no key
    add_lora(model, "narrow", rank=2, alpha=2, target_modules=targets)
    randomise(model, "narrow", seed=5)
    v_narrow = velocity(model, batch, "narrow")
    assert not torch.allclose(v_narrow, velocity(model, batch, None), atol=1e-5)
    torch.testing.assert_close(velocity(model, batch, "student"), v_student)  # unchanged by the new adapter
    x, cond = batch
    with torch.no_grad(), use_adapter(model, "narrow"):
        velocity(model, batch, None)  # a nested switch to the base ...
        torch.testing.assert_close(model.velocity(x, 0.6, cond), v_narrow)  # ... restores the outer adapter
