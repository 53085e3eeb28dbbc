"""The LoRA EMA's warm-ups: ``mean`` leaves no initial weight behind, ``legacy`` is the published runs' rule."""

import pytest
import torch

from flowopd.methods.grpo.config import GRPOConfig
from flowopd.training.ema import LoraEMA, ema_decay


def run_ema(warmup: str = "mean", steps: int = 16, every: int = 8) -> torch.Tensor:
    """The EMA of one parameter that is 0 at the start and equals the step number after each step."""
    p = torch.nn.Parameter(torch.zeros(3))
    ema = LoraEMA([p], decay=0.9, every=every, warmup=warmup)
    for step in range(1, steps + 1):
        with torch.no_grad():
            p.fill_(float(step))
        ema.update(step)
    return ema.shadow[0]


def test_mean_warmup_is_the_mean_of_the_updates_with_no_initial_weight():
    assert torch.allclose(run_ema("mean"), torch.full((3,), (8 + 16) / 2))  # steps 8 and 16, nothing of step 0


def test_legacy_warmup_keeps_a_third_of_the_initial_weights():
    d8, d16 = 9 / 18, 17 / 26
    expected = d16 * (1 - d8) * 8 + (1 - d16) * 16  # the initial weights (0) keep d8 * d16 of the mass
    assert torch.allclose(run_ema("legacy"), torch.full((3,), expected))
    assert d8 * d16 == pytest.approx(0.327, abs=1e-3)


def test_mean_warmup_reaches_the_decay_and_then_is_an_ema():
    assert [ema_decay(k, 0.9) for k in (0, 1, 9, 10, 50)] == [0.0, 0.5, 0.9, 0.9, 0.9]


def test_a_resumed_ema_continues_the_same_average():
    full = run_ema("mean", steps=32)
    p = torch.nn.Parameter(torch.zeros(3))
    first = LoraEMA([p], 0.9, 8)
    for step in range(1, 17):
        p.data.fill_(float(step))
        first.update(step)
    resumed = LoraEMA([p], 0.9, 8)
    resumed.load_state_dict(first.state_dict())
    for step in range(17, 33):
        p.data.fill_(float(step))
        resumed.update(step)
    assert torch.equal(resumed.shadow[0], full)


def test_an_unknown_warmup_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="ema_warmup"):
        GRPOConfig(ema_warmup="fast")
