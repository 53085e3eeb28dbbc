"""AWM as released: the generalised Huber weighting and the advantage scale on hand-made tensors, against the
formulas of docs/method.md ("AWM"), and the EMA target's linear schedule."""

from __future__ import annotations

import math

import pytest
import torch

from flowopd.methods.awm.config import AWMConfig, released_ref_weight
from flowopd.methods.awm.loss import awm_loss, flow_logp, scaled_advantages


def test_the_ghuber_weighting_is_the_released_formula() -> None:
    x0, eps = torch.zeros(2, 1, 1, 2), torch.zeros(2, 1, 1, 2)
    v = torch.tensor([[[[1.0, 3.0]]], [[[2.0, 2.0]]]])  # mse 5 and 4
    t = torch.tensor([0.5, 0.8])
    assert flow_logp(v, x0, eps).tolist() == [-5.0, -4.0]  # uniform: the negative flow-matching loss
    p = 0.25
    want = [-((mse + 1e-10) ** p - 1e-10 ** p) * tt / p for mse, tt in ((5.0, 0.5), (4.0, 0.8))]
    assert flow_logp(v, x0, eps, t, "ghuber", p).tolist() == pytest.approx(want, rel=1e-6)
    assert want[0] == pytest.approx(-0.5 * 4 * (5 ** 0.25 - 1e-10 ** 0.25), rel=1e-9)
    with pytest.raises(ValueError, match="needs the noise levels"):
        flow_logp(v, x0, eps, None, "ghuber")
    with pytest.raises(ValueError, match="weighting='huber' is unknown"):
        flow_logp(v, x0, eps, t, "huber")


def test_ghuber_grows_slower_than_the_squared_error() -> None:
    x0, eps, t = torch.zeros(3, 1, 1, 1), torch.zeros(3, 1, 1, 1), torch.ones(3)
    v = torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1, 1)
    loss = -flow_logp(v, x0, eps, t, "ghuber", 0.25)
    assert loss[1] / loss[0] == pytest.approx(100 ** 0.25, rel=1e-2)  # the mse grew 100x, the loss ~3.2x


def test_the_advantage_scale_and_the_loss_that_uses_it() -> None:
    a = torch.tensor([-9.0, -2.5, 0.0, 5.0])
    assert scaled_advantages(a, 5.0, None).tolist() == [-5.0, -2.5, 0.0, 5.0]
    assert scaled_advantages(a, 5.0, 1.0).tolist() == [-1.0, -0.5, 0.0, 1.0]
    x0, eps = torch.zeros(4, 1, 1, 1), torch.zeros(4, 1, 1, 1)
    v = torch.full((4, 1, 1, 1), 2.0, requires_grad=True)
    t = torch.full((4,), 0.5)
    logp = flow_logp(v.detach(), x0, eps, t, "ghuber")
    out = awm_loss(v, x0, eps, logp, scaled_advantages(a, 5.0, 1.0), t=t, weighting="ghuber", v_ref=None)
    assert out.ratio.tolist() == pytest.approx([1.0] * 4)  # on-policy
    assert out.loss.item() == pytest.approx(-(scaled_advantages(a, 5.0, 1.0).mean()).item())


def test_the_released_recipe_at_the_tiny_size() -> None:
    cfg = AWMConfig.released(rewards={"prefer": 1.0})
    assert (cfg.weighting, cfg.ghuber_power, cfg.advantage_max, cfg.ema_weight, cfg.ema_target_decay,
            cfg.ema_target_schedule, cfg.ref_weight) == ("ghuber", 0.25, 1.0, 1.0, 0.3, "linear", 0.0001)
    assert list(cfg.trained_levels()) == list(range(1, 9))  # 10 steps: levels 1-8, never t = 1
    assert released_ref_weight({"compose": 1.0}) == 0.001 and released_ref_weight({"quality": 1.0}) == 0.003
    assert list(AWMConfig().trained_levels()) == list(range(10))  # today's default: every level


def test_the_linear_ema_target_schedule() -> None:
    from flowopd.methods.awm.trainer import AWMTrainer

    trainer = AWMTrainer.__new__(AWMTrainer)
    trainer.old_params, trainer.params = [torch.zeros(1)], [torch.ones(1)]
    for schedule, step, want in (("constant", 5, 0.3), ("linear", 100, 0.1), ("linear", 1000, 0.3)):
        trainer.cfg, trainer.step = AWMConfig(ema_target_decay=0.3, ema_target_schedule=schedule), step
        trainer.old_params[0].zero_()
        assert trainer.update_old() == pytest.approx(want)
        assert trainer.old_params[0].item() == pytest.approx(1 - want)  # ema <- d ema + (1 - d) theta
    assert math.isclose(min(0.3, 0.001 * 100), 0.1)
