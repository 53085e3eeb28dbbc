"""Cold start: merge (exact), merge-avg, sft and none write a student adapter that OPD can start from."""

from __future__ import annotations

import pytest
import torch

from flowopd.adapters import (
    AdapterError,
    adapter_names,
    adapter_parameters,
    load_adapter,
    lora_layers,
)
from flowopd.coldstart.config import ColdStartConfig
from flowopd.coldstart.gains import gain_weights, teacher_gains
from flowopd.coldstart.merge import delta_weight
from flowopd.coldstart.trainer import run_coldstart
from flowopd.methods.opd.trainer import train_opd


def _deltas(model, name: str) -> dict[str, torch.Tensor]:
    return {layer: delta_weight(model, name, layer) for layer in lora_layers(model)}


def test_merge_writes_the_weighted_sum_of_the_teachers_deltas(tiny, make_teachers, tmp_path):
    model = tiny()
    teachers = make_teachers(model, {"compose": 1, "prefer": 2})
    cfg = ColdStartConfig(mode="merge", teachers=teachers, weights={"compose": 0.25, "prefer": 0.75})
    folder = run_coldstart(model, cfg, tmp_path)

    assert adapter_names(model) == []  # teachers and student removed again
    load_adapter(model, folder, "merged")
    load_adapter(model, teachers["compose"], "c")
    load_adapter(model, teachers["prefer"], "p")
    merged, c, p = _deltas(model, "merged"), _deltas(model, "c"), _deltas(model, "p")
    for layer, delta in merged.items():
        torch.testing.assert_close(delta, 0.25 * c[layer] + 0.75 * p[layer], rtol=1e-5, atol=1e-6)
    assert (tmp_path / "coldstart.json").is_file()


def test_merge_avg_none_and_sft(tiny, make_teachers, tmp_path):
    model = tiny()
    teachers = make_teachers(model, {"compose": 1, "prefer": 2})
    avg = run_coldstart(model, ColdStartConfig(mode="merge-avg", teachers=teachers), tmp_path / "avg")
    none = run_coldstart(model, ColdStartConfig(mode="none", lora_rank=4, lora_alpha=8.0), tmp_path / "none")
    losses = []
    sft = run_coldstart(model, ColdStartConfig(mode="sft", teachers=teachers, sft_steps=3, sft_batch_size=4,
                                               sft_samples_per_task=4, sft_best_of=2, eval_steps=3, lora_rank=4,
                                               lora_alpha=8.0, sft_beta_base=0.1),
                        tmp_path / "sft", callback=lambda m: losses.append(m["loss"]))
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    for name, folder in (("avg", avg), ("none", none), ("sft", sft)):
        load_adapter(model, folder, name)
    load_adapter(model, teachers["compose"], "c")
    load_adapter(model, teachers["prefer"], "p")
    params = {n: adapter_parameters(model, n) for n in ("avg", "none", "sft", "c", "p")}
    for key, value in params["avg"].items():  # element-wise mean of A and of B, as the released code
        torch.testing.assert_close(value, (params["c"][key.replace(".avg.", ".c.")] +
                                           params["p"][key.replace(".avg.", ".p.")]) / 2)
    assert all(p.abs().sum() == 0 for n, p in params["none"].items() if "lora_B" in n)  # none = the base
    assert any(p.abs().sum() > 0 for n, p in params["sft"].items() if "lora_B" in n)  # sft trained B


def test_opd_starts_from_the_cold_start(tiny, make_teachers, opd_config, tmp_path):
    model = tiny()
    teachers = make_teachers(model, {"compose": 1, "prefer": 2})
    init = run_coldstart(model, ColdStartConfig(mode="merge", teachers=teachers), tmp_path / "merge")
    train_opd(model, opd_config(teachers, init=str(init), lr=1e-12), tmp_path / "opd")
    load_adapter(model, init, "init")
    student, start = adapter_parameters(model, "student"), adapter_parameters(model, "init")
    assert student.keys() == {k.replace(".init.", ".student.") for k in start}  # rank 8 = 4 + 4 (cat)
    for key, value in start.items():
        torch.testing.assert_close(student[key.replace(".init.", ".student.")], value, rtol=1e-6, atol=1e-6)


def test_a_teacher_of_another_base_is_refused(tiny, make_teachers, tmp_path):
    teachers = make_teachers(tiny(seed=1), {"compose": 1})
    with pytest.raises(AdapterError, match=r"^teachers\['compose'\]='.*': adapter .* was trained on base model"):
        run_coldstart(tiny(), ColdStartConfig(mode="merge", teachers=teachers), tmp_path)


def test_gain_weighting_merges_by_each_teachers_measured_gain(tiny, make_teachers, tmp_path):
    model = tiny()
    teachers = make_teachers(model, {"compose": 1, "prefer": 2})
    seen = []
    cfg = ColdStartConfig(mode="merge", teachers=teachers, merge_weighting="gain", gain_prompts=4, eval_steps=2)
    folder = run_coldstart(model, cfg, tmp_path, callback=seen.append)

    reported = next(m for m in seen if "merge_weight/compose" in m)
    gains = {t: reported[f"gain/{t}"] for t in teachers}
    weights = {t: reported[f"merge_weight/{t}"] for t in teachers}
    assert weights == gain_weights(gains) and sum(weights.values()) == pytest.approx(1.0)
    for task, path in teachers.items():  # the gains are the teachers' own, measured again by hand
        load_adapter(model, path, f"t_{task}")
    again = teacher_gains(model, {t: f"t_{t}" for t in teachers}, prompts=4, steps=2, guidance=3.0, seed=0)
    assert again == pytest.approx(gains)
    load_adapter(model, folder, "merged")
    merged = _deltas(model, "merged")
    for layer, delta in merged.items():
        want = sum(weights[t] * delta_weight(model, f"t_{t}", layer) for t in teachers)
        torch.testing.assert_close(delta, want, rtol=1e-5, atol=1e-6)


def test_gain_weights_leave_out_teachers_that_gained_nothing():
    assert gain_weights({"text": 0.2, "prefer": 0.2, "compose": -0.1, "quality": 0.0}) == {
        "text": 0.5, "prefer": 0.5, "compose": 0.0, "quality": 0.0}
    assert gain_weights({"text": -0.1, "prefer": 0.0}) == {"text": 0.5, "prefer": 0.5}  # nobody gained: equal
