"""``flowopd.gradient_noise``: the gradient-noise-scale estimator recovers a known signal and noise."""

from __future__ import annotations

import pytest
import torch

from flowopd.gradient_noise import NoiseScale, noise_scale


def test_noise_scale_recovers_signal_noise_and_critical_batch() -> None:
    dim, prompts, batches, sigma = 2000, 16, 400, 0.05
    g = torch.Generator().manual_seed(0)
    signal = torch.randn(dim, generator=g)
    signal /= signal.norm()  # |G|^2 = 1
    per_prompt_noise = torch.randn(batches, prompts, dim, generator=g) * sigma  # tr(S) = dim * sigma^2 = 5
    grads = signal + per_prompt_noise.mean(1)
    est = noise_scale(grads, prompts)
    assert est.signal_sq == pytest.approx(1.0, abs=0.05)
    assert est.noise_trace == pytest.approx(dim * sigma**2, rel=0.05)
    assert est.b_noise == pytest.approx(dim * sigma**2, rel=0.1)
    # a step of 16 prompts: signal 1, noise 5/16, so two batch gradients have cosine 1 / (1 + 5/16)
    assert est.cosine == pytest.approx(1 / (1 + dim * sigma**2 / prompts), abs=0.03)


def test_noise_scale_without_signal_is_infinite() -> None:
    est = noise_scale(torch.eye(3), 4)  # three orthogonal gradients: no common direction at all
    assert est.b_noise == float("inf") and est.cosine == 0.0


def test_noise_scale_rejects_bad_shapes_and_units() -> None:
    with pytest.raises(ValueError, match="at least 2 batch gradients, got 1"):
        noise_scale(torch.eye(3)[:1], 4)
    with pytest.raises(ValueError, match=r"grads must be \[K, D\]"):
        noise_scale(torch.ones(3), 4)
    with pytest.raises(ValueError, match="units=0 is invalid"):
        noise_scale(torch.eye(3), 0)


def test_as_dict_names_the_json_fields() -> None:
    est = NoiseScale(signal_sq=1.0, noise_trace=4.0, b_noise=4.0, cosine=0.5)
    assert est.as_dict() == {"signal_sq": 1.0, "noise_trace": 4.0, "b_noise": 4.0, "cosine": 0.5}
