"""``benchmarks/gradient_noise.py``: the gradient-noise-scale estimator recovers a known signal and noise."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gradient_noise.py"


@pytest.fixture(scope="module")
def gradient_noise():
    spec = importlib.util.spec_from_file_location("gradient_noise", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_noise_scale_recovers_signal_noise_and_critical_batch(gradient_noise) -> None:
    dim, prompts, batches, sigma = 2000, 16, 400, 0.05
    g = torch.Generator().manual_seed(0)
    signal = torch.randn(dim, generator=g)
    signal /= signal.norm()  # |G|^2 = 1
    per_prompt_noise = torch.randn(batches, prompts, dim, generator=g) * sigma  # tr(S) = dim * sigma^2 = 5
    grads = signal + per_prompt_noise.mean(1)
    est = gradient_noise.noise_scale(grads, prompts)
    assert est["signal_sq"] == pytest.approx(1.0, abs=0.05)
    assert est["noise_trace"] == pytest.approx(dim * sigma**2, rel=0.05)
    assert est["b_noise"] == pytest.approx(dim * sigma**2, rel=0.1)
    # a step of 16 prompts: signal 1, noise 5/16, so two batch gradients have cosine 1 / (1 + 5/16)
    assert est["cosine"] == pytest.approx(1 / (1 + dim * sigma**2 / prompts), abs=0.03)


def test_noise_scale_without_signal_is_infinite_and_needs_two_batches(gradient_noise) -> None:
    grads = torch.eye(3)  # three orthogonal gradients: no common direction at all
    assert gradient_noise.noise_scale(grads, 4)["b_noise"] == float("inf")
    with pytest.raises(ValueError, match="at least 2 batch gradients"):
        gradient_noise.noise_scale(grads[:1], 4)
