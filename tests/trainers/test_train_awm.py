"""Advantage Weighted Matching: the loss against its equation on hand-made tensors (advantage sign and weight,
the stop-gradient on logp_old, the clip), the direction of a step, training on the small random model, the
EMA target, an exact resume and the command line."""

from __future__ import annotations

import math

import pytest
import torch

from flowopd.adapters import adapter_parameters, add_lora, trainable_parameters, use_adapter
from flowopd.config.presets import preset
from flowopd.layout import CHECKPOINT_DIR, OLD_ADAPTER_DIR
from flowopd.methods.awm.config import AWMConfig
from flowopd.methods.awm.loss import awm_loss, flow_logp
from flowopd.methods.awm.trainer import train_awm
from flowopd.training.rollout import lora_init_seed


def awm_config(**kw) -> AWMConfig:
    from .conftest import FAST

    return AWMConfig(**{**FAST, "timesteps_per_sample": 2, "rewards": {"prefer": 1.0}, "prompt_tasks": {"prefer": 1.0},
                 **kw})


def _weights(model, name: str = "teacher") -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in adapter_parameters(model, name).items()}


# --- the pure loss -----------------------------------------------------------------------------------------


def _hand_made():
    """Three samples of 1 x 2 x 2 latents, written out so that every number below can be checked by hand."""
    x0 = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]], [[[0.0, 2.0], [-1.0, 1.0]]], [[[0.5, 0.5], [0.0, -0.5]]]])
    eps = torch.tensor([[[[0.0, 1.0], [-1.0, 2.0]]], [[[1.0, 0.0], [1.0, -1.0]]], [[[-1.0, 0.0], [0.5, 1.0]]]])
    v = torch.tensor([[[[-0.5, 1.5], [-1.0, 2.5]]], [[[1.0, -2.0], [2.0, -1.5]]], [[[-1.0, 0.0], [0.0, 1.0]]]])
    return x0, eps, v.requires_grad_(True)


def test_flow_logp_is_the_negative_mean_squared_flow_matching_error() -> None:
    x0, eps, v = _hand_made()
    # sample 0: v - (eps - x0) = [-0.5, 1.5, -1, 2.5] - [-1, 2, -1.5, 2] = [0.5, -0.5, 0.5, 0.5] -> -0.25
    torch.testing.assert_close(flow_logp(v, x0, eps)[0], torch.tensor(-0.25))
    torch.testing.assert_close(flow_logp(v, x0, eps), -((v - (eps - x0)) ** 2).mean((1, 2, 3)))


def test_loss_is_the_codes_equation() -> None:
    """loss = mean_B max(-A ratio, -A clip(ratio, 1 - c, 1 + c)) + 0.003 mean (v - v_ref)^2 + w mean (v - v_ema)^2,
    ratio = exp(logp - logp_old), logp = -mean (v - (eps - x0))^2."""
    x0, eps, v = _hand_made()
    adv, c, w = torch.tensor([1.5, -2.0, 0.5]), 0.2, 0.1
    logp_old = torch.tensor([-0.1, -1.0, -0.3])
    v_ref, v_ema = v.detach() - 0.3, v.detach() + 0.2
    logp = -((v - (eps - x0)) ** 2).mean((1, 2, 3))
    ratio = torch.exp(logp - logp_old)
    policy = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - c, 1 + c))
    expected = policy.mean() + 0.003 * ((v - v_ref) ** 2).mean() + w * ((v - v_ema) ** 2).mean()
    out = awm_loss(v, x0, eps, logp_old, adv, clip=c, v_ref=v_ref, v_ema=v_ema, ema_weight=w)
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.ratio, ratio.detach())
    torch.testing.assert_close(out.policy, policy.detach())
    (grad,) = torch.autograd.grad(out.loss, v)
    (expected_grad,) = torch.autograd.grad(expected, v)
    torch.testing.assert_close(grad, expected_grad)


def test_on_policy_the_gradient_is_the_advantage_weighted_flow_matching_gradient() -> None:
    """With logp_old = logp (the same tensor, with its graph) the ratio is 1 and, because logp_old is
    stop-gradient, d loss / dv = A_i (2 / dims) (v_i - (eps_i - x0_i)) / B: a positive advantage descends the
    sample's flow-matching loss, a negative one ascends it, in proportion to |A|. Without the stop-gradient
    the ratio would be the constant 1 and the gradient zero."""
    x0, eps, v = _hand_made()
    adv = torch.tensor([2.0, -1.0, 0.0])
    out = awm_loss(v, x0, eps, flow_logp(v, x0, eps), adv)
    torch.testing.assert_close(out.ratio, torch.ones(3))
    out.loss.backward()
    fm_grad = 2 * (v.detach() - (eps - x0)) / 4 / 3  # d/dv_i of mean_B mean_dims (v - target)^2
    torch.testing.assert_close(v.grad, adv.view(-1, 1, 1, 1) * fm_grad)
    assert v.grad[2].abs().sum() == 0  # zero advantage: no signal


def test_the_clip_stops_the_gradient_only_where_the_ratio_left_the_trust_region_in_the_advantages_favour() -> None:
    """ratio > 1 + c with A > 0 (or < 1 - c with A < 0): the clipped constant is the max, no gradient;
    ratio > 1 + c with A < 0: the unclipped branch is the max and its gradient flows."""
    x0, eps, v = _hand_made()
    logp = flow_logp(v, x0, eps).detach()
    logp_old = logp - torch.tensor([0.5, 0.5, -0.5])  # ratios e^0.5 = 1.65, 1.65, e^-0.5 = 0.61
    adv = torch.tensor([1.0, -1.0, -1.0])
    out = awm_loss(v, x0, eps, logp_old, adv, clip=0.2)
    out.loss.backward()
    assert out.clipped.tolist() == [1.0, 0.0, 1.0]
    assert v.grad[0].abs().sum() == 0 and v.grad[2].abs().sum() == 0 and v.grad[1].abs().sum() > 0
    torch.testing.assert_close(out.policy, torch.tensor([-1.2, 1.0 * float(torch.exp(torch.tensor(0.5))), 0.8]))
    # The default clip of 1 (ratio in [0, 2]) leaves these ratios alone.
    assert awm_loss(v, x0, eps, logp_old, adv).clipped.sum() == 0


def test_loss_refuses_a_bad_clip_and_mismatched_shapes() -> None:
    x0, eps, v = _hand_made()
    with pytest.raises(ValueError, match="clip=0"):
        awm_loss(v, x0, eps, torch.zeros(3), torch.ones(3), clip=0.0)
    with pytest.raises(ValueError, match="one shape"):
        awm_loss(v[:, :, :1], x0, eps, torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match=r"must be \[B\]"):
        awm_loss(v, x0, eps, torch.zeros(2), torch.ones(2))


# --- on the model --------------------------------------------------------------------------------------


def test_a_step_learns_a_positive_advantage_sample_and_unlearns_a_negative_one(tiny, randomise) -> None:
    """One SGD step on one sample's AWM loss (on-policy logp_old): with A = +1 its flow-matching loss (at fixed
    x_t, t) goes down, with A = -1 it goes up."""
    def fm_after_step(a: float) -> tuple[float, float]:
        model = tiny()
        add_lora(model, "theta", 4, 8.0)
        randomise(model, "theta", std=0.1)
        params = trainable_parameters(model, "theta")
        g = torch.Generator().manual_seed(3)
        x0 = torch.randn((1, *model.latent_shape), generator=g)
        eps = torch.randn((1, *model.latent_shape), generator=g)
        t = torch.tensor([0.6])
        x_t = (1 - t) * x0 + t * eps
        cond = model.encode_prompts(["a red circle"])

        def fm() -> float:
            with torch.no_grad(), use_adapter(model, "theta"):
                return float(((model.velocity(x_t, t, cond) - (eps - x0)) ** 2).mean())

        before = fm()
        with use_adapter(model, "theta"):
            v = model.velocity(x_t, t, cond)
        awm_loss(v, x0, eps, torch.tensor([-before]), torch.tensor([a])).loss.backward()
        with torch.no_grad():
            for p in params:
                p -= 1e-2 * p.grad
        return before, fm()

    before, after = fm_after_step(1.0)
    assert after < before
    before, after = fm_after_step(-1.0)
    assert after > before


def test_a_few_steps_change_the_adapter_and_the_ema_target_follows(tiny, tmp_path) -> None:
    model = tiny()
    seen: list[dict] = []
    result = train_awm(model, awm_config(epochs=2, lr=1e-2, ema_target_decay=0.5), tmp_path, callback=seen.append)
    assert (result.step, result.epoch) == (4, 2) and (result.adapter_dir / "adapter.json").is_file()
    assert (tmp_path / CHECKPOINT_DIR / OLD_ADAPTER_DIR / "adapter.json").is_file()
    fresh = tiny()
    add_lora(fresh, "teacher", 4, 8.0, seed=lora_init_seed(0))  # the run's initial LoRA
    trained, initial = _weights(model), _weights(fresh)
    moved = [n for n, v in trained.items() if "lora_B" in n and not torch.equal(initial[n], v)]  # B starts at 0
    assert len(moved) >= 6  # of 7 (the last block's add_q_proj feeds nothing the loss sees)
    metrics = seen[-1]
    assert {"loss", "policy_loss", "ratio", "clip_frac", "awm/fm_loss", "awm/ref_mse", "awm/ema_mse",
            "reward/prefer", "advantage_abs", "grad_norm"} <= set(metrics)
    # The first optimizer step of each epoch trains on-policy rows: its ratios are 1; the second step's moved.
    assert 0.5 < metrics["ratio"] < 2.0 and metrics["clip_frac"] == 0.0
    # The EMA target lies strictly between its start (the initial LoRA) and the trained weights.
    ema = {n.replace(".teacher_old.", ".teacher."): p for n, p in _weights(model, "teacher_old").items()}
    gap = max(float((ema[n] - p).abs().max()) for n, p in trained.items() if "lora_B" in n)
    move = max(float(p.abs().max()) for n, p in trained.items() if "lora_B" in n)
    assert 0 < gap < move


def test_sampling_from_the_ema_and_cfg_train(tiny, tmp_path) -> None:
    cfg = awm_config(rewards={"prefer": 1.0, "quality": 0.5}, sample_from_ema=True, guidance=2.0, ema_weight=0.0,
                     ref_weight=0.0)
    seen: list[dict] = []
    train_awm(tiny(), cfg, tmp_path, callback=seen.append)
    assert {"reward/prefer", "reward/quality", "reward/total"} <= set(seen[-1])
    assert "awm/ema_mse" not in seen[-1] and "awm/ref_mse" not in seen[-1]


def test_config_checks_presets_and_help() -> None:
    with pytest.raises(ValueError, match="timesteps_per_sample=11 is invalid"):
        AWMConfig(timesteps_per_sample=11)
    with pytest.raises(ValueError, match="clip_range=0 is invalid"):
        AWMConfig(clip_range=0)
    with pytest.raises(ValueError, match="rewards"):
        AWMConfig(rewards={"nope": 1.0})
    assert all(f.help for f in AWMConfig.describe())
    assert preset("awm", "quick").epochs == 8
    paper = preset("awm", "paper")
    assert (paper.lr, paper.group_size, paper.timesteps_per_sample, paper.ref_weight, paper.guidance) == (
        3e-4, 24, 6, 0.0001, 1.0)  # the released PickScore config's KL weight (the preset's reward is pickscore)
    assert (paper.weighting, paper.advantage_max, paper.ema_weight, paper.ema_target_schedule) == (
        "ghuber", 1.0, 1.0, "linear")
    assert list(paper.trained_levels()) == list(range(1, 12))  # noise indices 1-11 of 14: never t = 1
    assert preset("awm", "paper", rewards={"ocr": 1.0}, prompt_tasks={"text": 1.0}).ref_weight == 0.003
    with pytest.raises(ValueError, match="only 3 noise levels are trained"):
        AWMConfig(first_level=1, level_fraction=0.4, timesteps_per_sample=4)
    with pytest.raises(TypeError, match="needs an AWMConfig"):
        from flowopd.methods.awm.trainer import AWMTrainer
        from flowopd.methods.nft.config import NFTConfig

        AWMTrainer(None, NFTConfig(), "unused")


def test_train_awm_from_the_command_line(cli, small_model_dir, tmp_path) -> None:
    code, out, _ = cli("train", "awm", "--help")
    assert code == 0 and "example: flowopd train awm" in out and "--record" in out
    config = tmp_path / "awm.json"
    awm_config().to_json(config)
    code, out, err = cli("train", "awm", "--config", config, "--out", tmp_path / "awm", "--model", small_model_dir)
    assert code == 0, err
    assert f"adapter written to {tmp_path / 'awm' / 'adapter'}" in out
    config.write_text('{"kind": "awm", "clip_range": 0}')
    code, _, err = cli("train", "awm", "--config", config, "--out", tmp_path / "bad")
    assert code == 2 and "clip_range=0 is invalid" in err, err


def test_the_released_recipe_trains(tiny, tmp_path) -> None:
    """ghuber log-probs, advantages scaled to +-1, the EMA pull of weight 1 on a linear schedule, no t = 1."""
    model = tiny()
    cfg = awm_config(weighting="ghuber", advantage_max=1.0, ema_weight=1.0, ema_target_decay=0.3,
                     ema_target_schedule="linear", first_level=1, level_fraction=1.0, ref_weight=0.0001)
    seen = []
    result = train_awm(model, cfg, tmp_path, callback=seen.append)
    assert result.step == 2 and all(math.isfinite(m["loss"]) for m in seen)
    assert seen[-1]["awm/ema_mse"] >= 0
