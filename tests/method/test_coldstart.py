"""Cold-start merges: the exact ones reproduce the weighted sum of the teachers' weight deltas."""

from __future__ import annotations

import pytest
import torch

from flowopd.adapters import AdapterError, add_lora, lora_layers, use_adapter
from flowopd.coldstart.merge import delta_weight, merge_adapters


@pytest.fixture
def teachers(model, randomise):
    """Three teachers of different ranks and alphas, with random factors."""
    for i, (r, a) in enumerate([(4, 8), (2, 2), (3, 12)]):
        add_lora(model, f"t{i}", rank=r, alpha=a)
        randomise(model, f"t{i}", seed=i)
    return ["t0", "t1", "t2"]


def weighted_sum(model, names, weights, layer):
    return sum(w * delta_weight(model, n, layer) for n, w in zip(names, weights))


def test_cat_merge_equals_weighted_sum_of_deltas_in_every_layer(model, teachers):
    weights = [0.5, 0.3, -0.2]
    merge_adapters(model, teachers, weights, "student", mode="cat")
    layers = lora_layers(model)
    assert layers
    for name, module in layers.items():
        assert module.lora_A["student"].weight.shape[0] == 4 + 2 + 3
        torch.testing.assert_close(delta_weight(model, "student", name), weighted_sum(model, teachers, weights, name),
                                   rtol=0, atol=1e-5)
    assert model.transformer.peft_config["student"].lora_alpha / 9 == pytest.approx(8 / 4)  # first teacher's scale
    assert not any(p.requires_grad for n, p in model.transformer.named_parameters() if ".student." in n)


def test_merged_adapter_runs_as_the_base_plus_summed_deltas(model, teachers, batch, make_model):
    weights = [0.6, 0.4]
    merge_adapters(model, teachers[:2], weights, "sum", mode="cat")
    fused = make_model()  # the same base, with the weighted deltas written into its weights
    modules = dict(fused.transformer.named_modules())
    with torch.no_grad():
        for name in lora_layers(model):
            modules[name].weight += weighted_sum(model, teachers[:2], weights, name)
    x, cond = batch
    with torch.no_grad(), use_adapter(model, "sum"):
        v_merged = model.velocity(x, 0.5, cond)
        v_fused = fused.velocity(x, 0.5, cond)
    torch.testing.assert_close(v_merged, v_fused, rtol=1e-4, atol=1e-4)


def test_svd_merge_is_exact_at_full_rank_and_best_below(model, teachers):
    weights = [1 / 3] * 3
    merge_adapters(model, teachers, weights, "full", mode="svd", rank=9)
    merge_adapters(model, teachers, weights, "low", mode="svd", rank=2)
    for name in lora_layers(model):
        target = weighted_sum(model, teachers, weights, name)
        torch.testing.assert_close(delta_weight(model, "full", name), target, rtol=0, atol=1e-5)
        s = torch.linalg.svdvals(target)
        err = torch.linalg.matrix_norm(delta_weight(model, "low", name) - target)  # Eckart-Young: tail of s
        assert err.item() == pytest.approx(s[2:].norm().item(), rel=1e-3, abs=1e-5)


def test_avg_is_the_released_elementwise_average_not_the_average_delta(model, randomise):
    for name, seed in (("a", 1), ("b", 2)):
        add_lora(model, name, rank=3, alpha=6)
        randomise(model, name, seed=seed)
    merge_adapters(model, ["a", "b"], [1.0, 1.0], "avg", mode="avg")
    layer = next(iter(lora_layers(model)))
    m = lora_layers(model)[layer]
    expected = m.scaling["a"] * (m.lora_B["a"].weight + m.lora_B["b"].weight) / 2 @ (
        (m.lora_A["a"].weight + m.lora_A["b"].weight) / 2)
    torch.testing.assert_close(delta_weight(model, "avg", layer), expected, rtol=0, atol=1e-6)
    mean_delta = (delta_weight(model, "a", layer) + delta_weight(model, "b", layer)) / 2
    assert not torch.allclose(delta_weight(model, "avg", layer), mean_delta, atol=1e-3)


def test_teachers_on_different_layers_merge_on_the_union_of_their_layers(model, teachers, randomise, tmp_path):
    from flowopd.adapters import adapter_deltas, add_full_delta, load_adapter, save_adapter

    add_lora(model, "narrow", rank=2, alpha=2, target_modules=("to_q",))
    randomise(model, "narrow", seed=7)
    add_full_delta(model, "full", {n: 0.05 * torch.randn_like(d) for n, d in adapter_deltas(model, "t1").items()})
    for mode in ("cat", "svd"):
        merged = merge_adapters(model, ["t0", "narrow", "full"], [0.5, 0.3, 0.2], f"m_{mode}", mode=mode,
                                rank=None if mode == "cat" else 64)
        deltas = {n: sum(w * d.get(n, 0) for w, d in zip((0.5, 0.3, 0.2), (
            adapter_deltas(model, "t0"), adapter_deltas(model, "narrow"), adapter_deltas(model, "full"))))
            for n in adapter_deltas(model, "full")}  # the full delta has every layer: the union
        got = adapter_deltas(model, merged)
        assert set(got) == set(deltas)
        for layer, want in deltas.items():
            torch.testing.assert_close(got[layer], want, rtol=0, atol=1e-5, msg=f"{mode} {layer}")
    folder = save_adapter(model, "m_cat", tmp_path / "m")  # per-layer ranks: saved and loaded like any adapter
    load_adapter(model, folder, "again")
    for layer, want in adapter_deltas(model, "m_cat").items():
        torch.testing.assert_close(adapter_deltas(model, "again")[layer], want)


def test_merge_refuses_bad_inputs(model, teachers):
    add_lora(model, "narrow", rank=2, alpha=2, target_modules=("to_q",))
    with pytest.raises(AdapterError, match=r"merge-avg\) needs adapters on the same layers.*\['narrow'\]"):
        merge_adapters(model, ["t0", "narrow"], [0.5, 0.5], "m", mode="avg")
    with pytest.raises(AdapterError, match="mode 'merge-avg'.*needs equal rank and alpha.*use the exact merge "
                                           "\\(cold-start mode 'merge'"):
        merge_adapters(model, ["t0", "t1"], [0.5, 0.5], "m", mode="avg")
    with pytest.raises(ValueError, match="unknown merge mode 'ties'"):
        merge_adapters(model, teachers, [1, 1, 1], "m", mode="ties")
    with pytest.raises(ValueError, match="one weight per adapter"):
        merge_adapters(model, teachers, [1], "m")
    with pytest.raises(AdapterError, match=r"\['ghost'\] are not on the model"):
        merge_adapters(model, ["t0", "ghost"], [1, 1], "m")
