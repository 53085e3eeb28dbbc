"""The memory plan (flowopd.memplan): the families' counts against the real configs, the counted activations of a
real-width slice against the formula, auto micro-batching, the refusal, and the ``plan memory --json`` contract."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch

from flowopd.memplan.families import FAMILIES, LARGE, MEDIUM, TEXT_TOKENS
from flowopd.memplan.plan import MARGIN, STAGES, activation_bytes, auto_plan, fits, plan_stage
from flowopd.memplan.preflight import family_of, preflight
from flowopd.memplan.settings import preset_config, stage_setting
from flowopd.models.presets import LORA_TARGET_MODULES


@pytest.mark.parametrize("family", [MEDIUM, LARGE], ids=lambda f: f.name)
def test_the_families_counts_are_the_real_configs(family) -> None:
    from diffusers import SD3Transformer2DModel

    from flowopd.bench.memory import transformer_config

    cfg = transformer_config(family, None)
    with torch.device("meta"):
        t = SD3Transformer2DModel(**cfg)
    assert sum(p.numel() for p in t.parameters()) == family.transformer_params
    assert t.pos_embed.pos_embed.numel() == family.pos_table
    targets = [n for n, _ in t.named_modules() if any(n.endswith("." + m) for m in LORA_TARGET_MODULES)]
    assert len(targets) == family.lora_projections
    assert family_of(SimpleNamespace(transformer=t)) is family


def test_a_real_width_slice_with_checkpointing_matches_the_formula() -> None:
    """Counted at 256 px (256 image tokens) against the coefficients counted at 512 px: the formula may overstate
    a small slice's peak (per-block constants spread over its fewer tokens) but must not understate it."""
    from flowopd.bench.model import SD35_MEDIUM_TRANSFORMER
    from flowopd.memplan.count import slice_peak_bytes

    resolution = 256
    for layers, dual in ((1, 1), (2, 1)):
        counted = slice_peak_bytes(SD35_MEDIUM_TRANSFORMER, layers, dual, resolution, checkpointing=True)
        sliced = dataclasses.replace(MEDIUM, layers=layers, dual_layers=dual)
        formula = activation_bytes(sliced, resolution, 2, checkpointing=True)
        assert 0.95 * counted <= formula <= 1.15 * counted, (layers, dual, counted, formula)
    assert MEDIUM.image_tokens(resolution) + TEXT_TOKENS == 461


def test_checkpointing_lowers_the_counted_activations() -> None:
    plain = activation_bytes(MEDIUM, 512, 2, checkpointing=False)
    ckpt = activation_bytes(MEDIUM, 512, 2, checkpointing=True)
    assert ckpt < plain / 3


def test_auto_picks_the_largest_micro_batch_that_fits() -> None:
    setting = stage_setting("grpo", preset_config("grpo", "paper"))
    for gpu in (12.0, 22.0, 40.0):
        plan = auto_plan(MEDIUM, setting, 1024, gpu)
        assert fits(plan, gpu)
        bigger = [m for m in setting.micro_batch_choices if m > plan.micro_batch]
        if bigger:
            over = plan_stage(MEDIUM, type(setting)(**{**setting.__dict__, "micro_batch": bigger[0],
                                                        "decode_chunk": plan.decode_chunk}), 1024)
            assert not fits(over, gpu)
    assert auto_plan(MEDIUM, setting, 1024, 40.0).micro_batch > auto_plan(MEDIUM, setting, 1024, 12.0).micro_batch


def test_a_run_over_its_gpu_is_refused_with_the_plan_and_the_fix() -> None:
    cfg = preset_config("grpo", "paper", train_batch_size=48, optimizer_steps_per_epoch=1)
    model = SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace(
        num_layers=24, num_attention_heads=24, attention_head_dim=64)), image_size=1024)
    with pytest.raises(ValueError, match=r"stage grpo needs about [\d.]+ GiB at micro-batch 48 .*activations .*"
                                         r"lower train_batch_size \(now 48\)"):
        preflight(model, "grpo", cfg, gpu_memory_gib=24.0)
    whole = preset_config("grpo", "paper", train_batch_size=1, decode_chunk=0)  # 48 images in one VAE call
    with pytest.raises(ValueError, match=r"lower decode_chunk \(now 48 images per VAE call\)"):
        preflight(model, "grpo", whole, gpu_memory_gib=80.0)
    assert preflight(model, "grpo", preset_config("grpo", "paper", train_batch_size=1), gpu_memory_gib=80.0)
    assert preflight(SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace(
        num_layers=2, num_attention_heads=2, attention_head_dim=32)), image_size=64), "grpo", cfg) is None


@pytest.mark.parametrize("model", list(FAMILIES))
def test_the_json_contract(cli, model) -> None:
    code, out, err = cli("plan", "memory", "--model", model, "--resolution", "512", "--preset", "paper", "--json",
                         "--gpu-memory", "22")
    assert code == 0, err
    plan = json.loads(out)
    assert {"model", "resolution", "gpu_memory_gib", "stages"} <= set(plan)
    assert (plan["model"], plan["resolution"], plan["gpu_memory_gib"]) == (model, 512, 22.0)
    assert [s["stage"] for s in plan["stages"]] == list(STAGES)
    for s in plan["stages"]:
        assert {"stage", "micro_batch", "peak_gib", "terms"} <= set(s) and s["micro_batch"] >= 1
        assert s["peak_gib"] == pytest.approx(sum(v for k, v in s["terms"].items() if k not in ("activations",
                                              "decode")) + max(s["terms"]["activations"], s["terms"]["decode"]),
                                              abs=0.02)
        assert s["fits"] == (s["peak_gib"] <= 22.0 * (1 - MARGIN))


def test_bad_input_names_the_flag(cli, tmp_path) -> None:
    code, _, err = cli("plan", "memory", "--model", "sd3.5-medium", "--resolution", "500")
    assert code == 2 and "--resolution 500 is invalid" in err
    code, _, err = cli("plan", "memory", "--model", "sd3.5-medium", "--config", str(tmp_path / "nope.json"),
                       "--stage", "grpo")
    assert code == 2 and "--config" in err and "does not exist" in err


def test_the_docs_tables_are_the_plan() -> None:
    from pathlib import Path

    from flowopd.memplan.docs import rewrite

    page = (Path(__file__).resolve().parents[2] / "docs" / "sd35.md").read_text()
    assert rewrite(page) == page, "regenerate: python -m flowopd.memplan.docs docs/sd35.md"


def test_bench_memory_measures_a_stage_against_the_plan_on_a_cpu(cli, tmp_path) -> None:
    """The GPU check's path on a CPU: a 1-block slice at 128 px, the weights plus the step's peak of live bytes."""
    code, out, err = cli("bench", "memory", "--device", "cpu", "--layers", "1", "--resolution", "128", "--stages",
                         "grpo", "--out", tmp_path)
    assert code == 0, err
    (row,) = json.loads((tmp_path / "bench-memory.json").read_text())
    assert (row["stage"], row["layers"], row["device"]) == ("grpo", 1, "cpu")
    assert row["planned_terms"]["activations"] > 0 and row["measured_gib"] > 0.4  # the bf16 position table alone
    assert 0.9 <= row["ratio"] <= 1.2, row  # the plan does not understate the measurement, nor overstate it much


def test_a_full_student_counts_every_weight_its_adam_states_and_its_identities() -> None:
    from flowopd.memplan.plan import GIB, IDENTITY_FACTORS

    teachers = {t: "-" for t in ("compose", "text", "prefer", "quality")}
    lora = plan_stage(MEDIUM, stage_setting("opd", preset_config("opd", "paper", teachers=teachers)), 512)
    full = plan_stage(MEDIUM, stage_setting("opd", preset_config("opd", "paper", teachers=teachers,
                                                                 student_params="full")), 512)
    params = MEDIUM.transformer_params
    ema = 4 if preset_config("opd", "paper", teachers=teachers).ema else 0
    assert full.terms["trained_lora"] == pytest.approx(params * (16 + ema) / GIB)
    assert full.terms["identity_factors"] == pytest.approx(IDENTITY_FACTORS * params * 4 / GIB)
    assert "identity_factors" not in lora.terms
    assert full.peak_gib - lora.peak_gib > 40  # SD3.5 Medium: 2.5 B weights trained in fp32 with Adam
