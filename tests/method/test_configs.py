"""Stage configs: JSON round-trip, SD3.5 defaults, help on every field, validation messages."""

from __future__ import annotations

from dataclasses import fields

import pytest

from flowopd.coldstart.config import ColdStartConfig
from flowopd.methods.grpo.config import GRPOConfig
from flowopd.methods.opd.config import OPDConfig

TEACHERS = {"compose": "runs/t-compose", "text": "runs/t-text", "prefer": "runs/t-prefer"}


def opd(**kw) -> OPDConfig:
    return OPDConfig(**{"teachers": dict(TEACHERS), **kw})


@pytest.mark.parametrize("make", [GRPOConfig, lambda **kw: ColdStartConfig(teachers=dict(TEACHERS), **kw), opd,
                                  GRPOConfig.sd35_medium, lambda: OPDConfig.sd35_medium(teachers=dict(TEACHERS)),
                                  lambda: ColdStartConfig.sd35_medium(teachers=dict(TEACHERS))])
def test_json_round_trip(make, tmp_path):
    cfg = make()
    again = type(cfg).from_json(cfg.to_json())
    assert again == cfg
    path = tmp_path / "cfg.json"
    cfg.to_json(path)
    assert type(cfg).from_json(path) == cfg


def test_every_field_has_help():
    for cls in (GRPOConfig, ColdStartConfig, OPDConfig):
        missing = [f.name for f in fields(cls) if not f.metadata.get("help")]
        assert not missing, f"{cls.__name__}: {missing}"
        assert set(cls.help()) == {f.name for f in fields(cls)}


def test_sd35_defaults_follow_the_paper():
    g = GRPOConfig.sd35_medium()
    assert (g.lora_rank, g.lora_alpha, g.num_steps, g.eval_steps, g.guidance, g.group_size) == (32, 64, 10, 40, 4.5, 24)
    o = OPDConfig.sd35_medium(teachers=dict(TEACHERS), lr=2e-4)
    assert (o.group_size, o.lr, o.beta_mar, o.loss_mode, o.routing) == (16, 2e-4, 0.02, "kl", "per-sample")
    assert o.model == "stabilityai/stable-diffusion-3.5-medium"
    # Flow-GRPO's rollouts are stochastic to the last step; only the tiny world's defaults clean the last one.
    assert not g.clean_untrained_steps and not o.clean_untrained_steps and GRPOConfig().clean_untrained_steps


@pytest.mark.parametrize("make, message", [
    (lambda: GRPOConfig(group_size=5), r"group_size=5 is invalid: it must divide batch_size=64"),
    (lambda: GRPOConfig(group_size=1), r"group_size=1 is invalid: GRPO needs >= 2"),
    (lambda: GRPOConfig(train_batch_size=5), r"train_batch_size=5 is invalid"),
    (lambda: GRPOConfig(optimizer_steps_per_epoch=3), r"optimizer_steps_per_epoch=3 is invalid.*8 micro-batches"),
    (lambda: GRPOConfig(lr=0), r"lr=0 is invalid: use a positive number"),
    (lambda: GRPOConfig(steps_per_microbatch=9), r"steps_per_microbatch=9 is invalid: use 0 \(all\) or a whole "
                                                 r"number up to the 8 trained steps"),
    (lambda: opd(steps_per_microbatch=-1), r"steps_per_microbatch=-1 is invalid"),
    (lambda: GRPOConfig(sde_window=9), r"sde_window=9 is invalid: use 0 \(off\) or a whole number of steps up to "
                                       r"the 8 trained steps"),
    (lambda: opd(sde_window=True), r"sde_window=True is invalid"),
    (lambda: GRPOConfig(sde_window=2, steps_per_microbatch=3),
     r"steps_per_microbatch=3 is invalid: use at most sde_window=2: only the window's steps train"),
    (lambda: GRPOConfig(noise_level=0), r"noise_level=0 is invalid"),
    (lambda: opd(lr_schedule="step"), r"lr_schedule='step' is invalid: use one of constant, cosine, linear"),
    (lambda: GRPOConfig(prompt_tasks={"ocr": 1.0}), r"'ocr' is not a task"),
    (lambda: GRPOConfig(rewards={}), r"rewards=\{\} is invalid"),
    (lambda: GRPOConfig(mixed_precision="fp8"), r"mixed_precision='fp8' is invalid: use one of no, fp16, bf16"),
    (lambda: opd(loss_mode="gkd"), r"loss_mode='gkd' is invalid: use one of kl, pg, paper"),
    (lambda: opd(weighting="sum"), r"weighting='sum' is invalid: use one of code, paper, uniform"),
    (lambda: opd(routing="soft"), r"routing='soft' is invalid: use one of per-sample, alternate"),
    (lambda: opd(routing="alternate"), r"epochs_per_task=\{\} is invalid"),
    (lambda: opd(prompt_tasks={"compose": 1, "quality": 1}),
     r"tasks \['quality'\] have no teacher \(tasks: \['compose', 'quality'\], "
     r"teachers: \['compose', 'prefer', 'text'\]"),
    (lambda: OPDConfig(), r"teachers=\{\} is invalid: map tasks"),
    (lambda: opd(teachers={"ocr": "x"}), r"teachers=\{'ocr': 'x'\} is invalid: map tasks \(compose, text"),
    (lambda: ColdStartConfig(teachers=dict(TEACHERS), svd_rank=0), r"svd_rank=0 is invalid"),
    (lambda: opd(beta_mar=-1), r"beta_mar=-1 is invalid"),
    (lambda: ColdStartConfig(), r"teachers=\{\} is invalid: mode 'merge' needs teachers"),
    (lambda: ColdStartConfig(mode="average", teachers=dict(TEACHERS)), r"mode='average' is invalid"),
    (lambda: ColdStartConfig(teachers=dict(TEACHERS), weights={"compose": 1}), r"one weight per teacher"),
])
def test_validation_names_the_field_and_the_fix(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_from_json_refuses_unknown_keys_and_other_kinds():
    with pytest.raises(ValueError, match=r"unknown grpo config keys \['learning_rate'\]"):
        GRPOConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="this is a 'grpo' config, not a 'opd' one"):
        OPDConfig.from_json(GRPOConfig().to_json())
    with pytest.raises(ValueError, match="not valid JSON"):
        GRPOConfig.from_json("{nope")


def test_alternate_routing_and_coldstart_weights():
    cfg = opd(routing="alternate", epochs_per_task={"text": 1, "compose": 3})
    assert cfg.epochs_per_task == {"text": 1, "compose": 3}
    assert ColdStartConfig(teachers=dict(TEACHERS)).merge_weights() == pytest.approx(
        {"compose": 1 / 3, "text": 1 / 3, "prefer": 1 / 3})
    assert ColdStartConfig(mode="none").teachers == {}
