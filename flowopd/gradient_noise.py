"""The gradient noise scale (McCandlish et al. 2018, "An empirical model of large-batch training").

K independent batches of n units each (a unit is a prompt with its group of samples in Flow-GRPO) give
batch gradients g_1 .. g_K. With G the true gradient and S the per-unit gradient covariance,

    E|g_i|^2 = |G|^2 + tr(S) / n,    E<g_i, g_j> = |G|^2  (i != j),

so the mean off-diagonal Gram entry estimates the signal |G|^2, ``n (mean |g_i|^2 - |G|^2)`` the noise
tr(S), and their ratio ``B_noise = tr(S) / |G|^2`` is the batch size (in units) at which a step's noise
has the size of its signal. A step of far fewer units than B_noise is mostly noise.
``benchmarks/gradient_noise.py`` measures it for the GRPO and OPD gradients of the tiny world.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NoiseScale:
    """Estimates from K batch gradients of ``n`` units each.

    Attributes:
        signal_sq: |G|^2, the mean pairwise dot product of the batch gradients.
        noise_trace: tr(S), the per-unit noise: ``n (mean |g_i|^2 - |G|^2)``.
        b_noise: ``tr(S) / |G|^2`` in units; ``inf`` when no signal is detected (``signal_sq <= 0``).
        cosine: mean pairwise cosine of the batch gradients, about ``1 / (1 + B_noise / n)``.
    """

    signal_sq: float
    noise_trace: float
    b_noise: float
    cosine: float

    def as_dict(self) -> dict[str, float]:
        """The four estimates by name, as the benchmark's JSON rows hold them."""
        return {"signal_sq": self.signal_sq, "noise_trace": self.noise_trace, "b_noise": self.b_noise,
                "cosine": self.cosine}


def noise_scale(grads: torch.Tensor, units: int) -> NoiseScale:
    """Signal, noise and B_noise from K >= 2 independent batch gradients.

    Args:
        grads: float tensor [K, D], one flattened gradient per batch; computed in float64.
        units: n, the independent units (prompts) per batch; B_noise and tr(S) are in these units.

    Returns:
        The :class:`NoiseScale` estimates.

    Raises:
        ValueError: when ``grads`` is not [K, D] with K >= 2, or ``units`` < 1.

    Example:
        >>> g = torch.tensor([[1.0, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1]])  # signal (1, 0, 0, 0) + orthogonal noise
        >>> est = noise_scale(g, units=4)
        >>> est.signal_sq, est.noise_trace, est.b_noise, round(est.cosine, 6)
        (1.0, 4.0, 4.0, 0.5)
    """
    if grads.ndim != 2:
        raise ValueError(f"grads must be [K, D] (one flattened gradient per batch), got shape {tuple(grads.shape)}")
    k = grads.shape[0]
    if k < 2:
        raise ValueError(f"noise_scale needs at least 2 batch gradients, got {k}")
    if units < 1:
        raise ValueError(f"units={units} is invalid: pass the number of prompts per batch (>= 1)")
    g = grads.double()
    gram = g @ g.T  # [K, K]
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=g.device)
    signal_sq = float(gram[off_diagonal].mean())
    noise_trace = units * (float(gram.diagonal().mean()) - signal_sq)
    norms = gram.diagonal().sqrt().clamp_min(1e-30)  # a batch whose groups all tie has no gradient
    cosine = float((gram / (norms[:, None] * norms[None, :]))[off_diagonal].mean())
    b_noise = noise_trace / signal_sq if signal_sq > 0 else float("inf")  # no signal detected
    return NoiseScale(signal_sq=signal_sq, noise_trace=noise_trace, b_noise=b_noise, cosine=cosine)
