"""GRPO pieces against hand-computed values (docs/method.md, "GRPO")."""

from __future__ import annotations

import math

import pytest
import torch

from flowopd.methods.grpo.loss import group_advantages, grpo_step_loss, kl_to_reference


def test_global_std_advantages_match_hand_computation():
    # groups: a = [1, 2, 6] (mean 3), b = [4, 8] (mean 6), c = [5] (alone)
    r = torch.tensor([1.0, 2.0, 6.0, 4.0, 8.0, 5.0])
    ids = ["a", "a", "a", "b", "b", "c"]
    mean = 26 / 6
    std = math.sqrt(sum((x - mean) ** 2 for x in [1, 2, 6, 4, 8, 5]) / 6)  # population std, ddof 0
    expected = [(1 - 3) / (std + 1e-4), (2 - 3) / (std + 1e-4), (6 - 3) / (std + 1e-4),
                (4 - 6) / (std + 1e-4), (8 - 6) / (std + 1e-4), 0.0]
    adv = group_advantages(r, ids)
    assert adv.dtype == torch.float32
    torch.testing.assert_close(adv, torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_per_group_std_and_group_of_one():
    r = torch.tensor([1.0, 2.0, 6.0, 4.0, 8.0, 5.0])
    ids = [0, 0, 0, 1, 1, 2]
    std_a = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (6 - 3) ** 2) / 3)
    expected = [-2 / std_a, -1 / std_a, 3 / std_a, -1.0, 1.0, 0.0]  # group b: std 2, deviations +-2
    adv = group_advantages(r, ids, global_std=False, eps=0.0)
    torch.testing.assert_close(adv, torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_equal_rewards_give_zero_not_nan():
    adv = group_advantages(torch.tensor([0.5, 0.5, 0.5, 0.5]), ["p", "p", "q", "q"], global_std=False)
    assert torch.equal(adv, torch.zeros(4))
    assert torch.equal(group_advantages(torch.tensor([3.0]), ["solo"]), torch.zeros(1))


def test_interleaved_ids_and_errors():
    adv = group_advantages(torch.tensor([1.0, 10.0, 3.0, 20.0]), ["x", "y", "x", "y"], eps=0.0)
    assert adv[0] < 0 < adv[2] and adv[1] < 0 < adv[3]
    with pytest.raises(ValueError, match="one id per reward"):
        group_advantages(torch.tensor([1.0, 2.0]), ["a"])
    with pytest.raises(ValueError, match="NaN"):
        group_advantages(torch.tensor([1.0, float("nan")]), ["a", "a"])


def test_grpo_step_loss_values_and_clipping():
    old = torch.zeros(2)
    # ratio 1: loss = -mean(clip(A, -5, 5))
    lp = torch.zeros(2, requires_grad=True)
    assert grpo_step_loss(lp, old, torch.tensor([2.0, 9.0])).item() == pytest.approx(-3.5)
    # ratio far above 1 + eps with A > 0: the clipped term wins, gradient is zero
    lp = torch.full((1,), 0.1, requires_grad=True)
    loss = grpo_step_loss(lp, torch.zeros(1), torch.tensor([1.0]), clip_range=1e-4)
    loss.backward()
    assert loss.item() == pytest.approx(-(1 + 1e-4))
    assert lp.grad.abs().item() == 0
    # ratio above 1 + eps with A < 0: the unclipped term is pessimistic, gradient flows
    lp = torch.full((1,), 0.1, requires_grad=True)
    grpo_step_loss(lp, torch.zeros(1), torch.tensor([-1.0])).backward()
    assert lp.grad.item() == pytest.approx(math.exp(0.1))
    with pytest.raises(ValueError, match="clip_range"):
        grpo_step_loss(lp, old[:1], torch.ones(1), clip_range=0)


def test_kl_to_reference_is_mean_over_dims_without_dt():
    mean = torch.zeros(2, 3, 4, 4)
    ref = torch.ones(2, 3, 4, 4)
    ref[1] *= 2
    kl = kl_to_reference(mean, ref, 0.5)
    torch.testing.assert_close(kl, torch.tensor([1 / (2 * 0.25), 4 / (2 * 0.25)]))
    per_sample = kl_to_reference(mean, ref, torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(per_sample, torch.tensor([2.0, 2.0]))
