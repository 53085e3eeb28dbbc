"""Task sampling by the remaining distance to each teacher, and the gradient-conflict measure, on hand-made values."""

from __future__ import annotations

import pytest
import torch

from flowopd.methods.opd.config import OPDConfig
from flowopd.methods.opd.sampling import distance_weights, gradient_cosines


def test_distance_weights_follow_the_remaining_gap_with_a_floor() -> None:
    student = {"compose": 0.30, "text": 0.70, "prefer": 0.80}
    teacher = {"compose": 0.50, "text": 0.90, "prefer": 0.75}  # gaps 0.2, 0.2, none (the student is past it)
    w = distance_weights(student, teacher, floor=0.3)
    assert w == pytest.approx({"compose": 0.1 + 0.35, "text": 0.1 + 0.35, "prefer": 0.1})
    assert sum(w.values()) == pytest.approx(1.0)
    assert distance_weights(student, teacher, floor=0.0)["prefer"] == 0.0
    assert distance_weights({"a": 1.0, "b": 1.0}, {"a": 0.5, "b": 0.9}, floor=0.1) == {"a": 0.5, "b": 0.5}
    assert distance_weights({}, {"a": 0.5, "b": 0.9}, floor=0.0) == {"a": 0.5, "b": 0.5}  # no student yet: no gap
    with pytest.raises(ValueError, match="floor=2 must be in"):
        distance_weights(student, teacher, floor=2)


def test_gradient_cosines_of_hand_made_gradients() -> None:
    g = {"a": [torch.tensor([1.0, 0.0]), torch.tensor([[0.0]])],
         "b": [torch.tensor([1.0, 1.0]), torch.tensor([[0.0]])],
         "c": [torch.tensor([-2.0, 0.0]), torch.tensor([[0.0]])],
         "z": [torch.zeros(2), torch.zeros(1, 1)]}
    cos = gradient_cosines(g)
    assert cos["a~b"] == pytest.approx(2 ** -0.5)
    assert cos["a~c"] == pytest.approx(-1.0) and cos["b~c"] == pytest.approx(-(2 ** -0.5))
    assert cos["a~z"] == 0.0 and len(cos) == 6


def test_distance_sampling_needs_rewards_and_a_routing_that_samples() -> None:
    teachers = {"compose": "a", "text": "b"}
    with pytest.raises(ValueError, match="task_sampling='distance' is invalid: distance needs the student's rewards"):
        OPDConfig(teachers=teachers, prompt_tasks={"compose": 1.0, "text": 1.0}, task_sampling="distance",
                  log_rewards=False)
    with pytest.raises(ValueError, match="teacher_rewards=.* are not prompt tasks"):
        OPDConfig(teachers=teachers, prompt_tasks={"compose": 1.0, "text": 1.0}, task_sampling="distance",
                  teacher_rewards={"prefer": 0.8})
