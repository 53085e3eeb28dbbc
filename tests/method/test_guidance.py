"""Every model samples at its own guidance: an adapter carries the CFG scale it is meant to be sampled at
(adapter.json), evaluation and Compare use it unless told otherwise, and distillation's target is each teacher's
velocity at the teacher's guidance (docs/method.md, "Guidance")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flowopd.adapters import AdapterError, adapter_guidance, add_lora, delete_adapter, save_adapter
from flowopd.config.eval import EvalConfig
from flowopd.methods.opd.routing import blend_velocity, guidance_of, routed_velocity


class GuidanceEcho:
    """A stand-in model whose velocity is its CFG scale everywhere, plus 100 when the adapter 'b' is active: what
    a teacher contributes to a target is then readable from the target alone."""

    def __init__(self) -> None:
        self.active: str | None = None

    def velocity(self, x, sigma, cond, uncond=None, guidance=1.0):
        return torch.full_like(x, float(guidance) + (100.0 if self.active == "b" else 0.0))


class Embeds:
    def subset(self, idx):
        return self


@pytest.fixture
def echo(monkeypatch):
    import contextlib

    import flowopd.methods.opd.routing as routing

    model = GuidanceEcho()

    @contextlib.contextmanager
    def use(m, name):
        previous, m.active = m.active, name
        try:
            yield
        finally:
            m.active = previous

    monkeypatch.setattr(routing, "use_adapter", use)
    return model


def test_the_target_is_each_teachers_velocity_at_its_own_guidance(echo) -> None:
    x = torch.zeros(3, 1, 2, 2)
    v = routed_velocity(echo, ["a", "b", "a"], x, 0.5, Embeds(), Embeds(), {"a": 1.0, "b": 4.5})
    assert v[:, 0, 0, 0].tolist() == [1.0, 104.5, 1.0]
    v = routed_velocity(echo, ["a", "b", "a"], x, 0.5, Embeds(), Embeds(), 3.0)  # one override for all
    assert v[:, 0, 0, 0].tolist() == [3.0, 103.0, 3.0]
    blended = blend_velocity(echo, [{"a": 0.5, "b": 0.5}, {"a": 1.0}, {"b": 1.0}], x, 0.5, Embeds(), Embeds(),
                             {"a": 1.0, "b": 3.0})
    assert blended[:, 0, 0, 0].tolist() == [0.5 * 1.0 + 0.5 * 103.0, 1.0, 103.0]
    with pytest.raises(ValueError, match="no guidance for adapter 'c'"):
        guidance_of({"a": 1.0}, "c")


@pytest.fixture
def own_model(small_model_dir):
    """A model of its own (adapters leave LoRA layers behind; the session's small_model must stay bare)."""
    from flowopd.models.tiny import TinyFlowModel

    return TinyFlowModel.load(small_model_dir)


def _two_adapters(model, tmp_path: Path) -> tuple[Path, Path]:
    """One adapter saved with guidance 1.0 and one without (as an imported or older adapter)."""
    add_lora(model, "g", 2, 2.0)
    try:
        return (save_adapter(model, "g", tmp_path / "with", guidance=1.0),
                save_adapter(model, "g", tmp_path / "without"))
    finally:
        delete_adapter(model, "g")


def test_an_adapter_carries_its_guidance(own_model, tmp_path: Path) -> None:
    with_one, without = _two_adapters(own_model, tmp_path)
    assert json.loads((with_one / "adapter.json").read_text())["guidance"] == 1.0
    assert adapter_guidance(with_one, 3.0) == 1.0
    assert adapter_guidance(without, 3.0) == 3.0  # an imported or older adapter: the caller's default
    assert adapter_guidance(None, 4.5) == 4.5  # the base
    meta = json.loads((with_one / "adapter.json").read_text())
    (with_one / "adapter.json").write_text(json.dumps({**meta, "guidance": "high"}))
    with pytest.raises(AdapterError, match="guidance='high' is invalid: use a number > 0"):
        adapter_guidance(with_one, 3.0)


def test_evaluation_samples_each_adapter_at_its_own_guidance_unless_overridden(own_model, tmp_path, monkeypatch):
    import flowopd.evaluate as evaluate

    small_model = own_model
    used = []

    def fake_generate(model, prompts, *, seeds, num_steps, guidance, batch_size):
        used.append(guidance)
        return torch.rand(len(prompts), 3, model.image_size, model.image_size)

    monkeypatch.setattr(evaluate, "generate", fake_generate)
    nft_like, imported = _two_adapters(small_model, tmp_path)
    protocol = EvalConfig(tasks=["prefer"])

    def run(adapter, cfg=protocol):
        used.clear()
        report = evaluate.evaluate_adapter(small_model, adapter, cfg, limit=2)
        return used[0], report["protocol"]["guidance"]

    assert run(nft_like) == (1.0, 1.0)  # its own
    assert run(imported) == (3.0, 3.0)  # none of its own: base_guidance
    assert run(None) == (3.0, 3.0)  # the base
    assert run(nft_like, EvalConfig(tasks=["prefer"], guidance=2.0)) == (2.0, 2.0)  # an override wins
    assert run(None, EvalConfig.sd35_medium(tasks=["prefer"])) == (4.5, 4.5)
