"""DiffusionNFT: the loss against its equations on hand-made tensors, the direction of a step, training on the
small random model, the old adapter's soft update, and an exact resume."""

from __future__ import annotations

import pytest
import torch

from flowopd.adapters import adapter_parameters, add_lora, trainable_parameters, use_adapter
from flowopd.layout import CHECKPOINT_DIR, OLD_ADAPTER_DIR
from flowopd.methods.nft.config import NFTConfig
from flowopd.methods.nft.loss import nft_loss, old_decay, optimality
from flowopd.methods.nft.trainer import train_nft
from flowopd.training.rollout import lora_init_seed


# The trainer tests' FAST size (tests/trainers/conftest.py), with 2 noise levels per sample.
def nft_config(**kw) -> NFTConfig:
    from .conftest import FAST

    return NFTConfig(**{**FAST, "timesteps_per_sample": 2, "rewards": {"prefer": 1.0}, "prompt_tasks": {"prefer": 1.0},
                 **kw})


def _weights(model, name: str = "teacher") -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in adapter_parameters(model, name).items()}


# --- the pure pieces --------------------------------------------------------------------------------------


def test_optimality_is_half_plus_half_the_clipped_scaled_advantage() -> None:
    a = torch.tensor([-7.0, -5.0, -1.0, 0.0, 2.0, 5.0, 9.0])
    expected = torch.tensor([0.0, 0.0, 0.4, 0.5, 0.7, 1.0, 1.0])  # 1/2 + 1/2 clip(a / 5, -1, 1)
    torch.testing.assert_close(optimality(a, 5.0), expected)
    torch.testing.assert_close(optimality(torch.tensor([1.0]), 2.0), torch.tensor([0.75]))
    with pytest.raises(ValueError, match="must be > 0"):
        optimality(a, 0.0)


def test_old_decay_follows_the_codes_schedules() -> None:
    assert [old_decay(s) for s in (0, 1, 250, 500, 5000)] == pytest.approx([0.0, 0.001, 0.25, 0.5, 0.5])
    ocr = dict(rate=0.0075, maximum=0.999, flat=75)
    assert [old_decay(s, **ocr) for s in (0, 74, 75, 95, 1000)] == pytest.approx([0, 0, 0, 0.15, 0.999])


def _hand_made():
    """Two samples of 1 x 2 x 2 latents, written out so that every number below can be checked by hand."""
    x0 = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]], [[[0.0, 2.0], [-1.0, 1.0]]]])
    eps = torch.tensor([[[[0.0, 1.0], [-1.0, 2.0]]], [[[1.0, 0.0], [1.0, -1.0]]]])
    t = torch.tensor([0.5, 0.25])
    tt = t.view(-1, 1, 1, 1)
    x_t = (1 - tt) * x0 + tt * eps
    v_old = torch.tensor([[[[0.5, 1.0], [-1.0, 1.0]]], [[[0.0, -1.0], [2.0, -2.0]]]])
    v = (v_old + torch.tensor([[[[0.2, -0.1], [0.3, 0.0]]], [[[-0.4, 0.1], [0.0, 0.2]]]])).requires_grad_(True)
    v_ref = v_old - 0.3
    return x0, eps, t, tt, x_t, v_old, v, v_ref


def test_plain_loss_is_the_papers_equation() -> None:
    """L = mean_B [r ||v+ - (eps - x0)||^2 + (1 - r) ||v- - (eps - x0)||^2] (means over dims), with
    v+ = beta v + (1 - beta) v_old and v- = (1 + beta) v_old - beta v; plus 1e-4 ||v - v_ref||^2."""
    x0, eps, t, _, x_t, v_old, v, v_ref = _hand_made()
    r, beta = torch.tensor([0.9, 0.2]), 0.5
    target = eps - x0
    pos = ((beta * v + (1 - beta) * v_old - target) ** 2).mean((1, 2, 3))
    neg = (((1 + beta) * v_old - beta * v - target) ** 2).mean((1, 2, 3))
    expected = (r * pos + (1 - r) * neg).mean() + 1e-4 * ((v - v_ref) ** 2).mean()
    out = nft_loss(v, v_old, v_ref, x0, x_t, t, r, beta, adaptive=False)
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.positive, pos.detach())
    torch.testing.assert_close(out.negative, neg.detach())


def test_the_branches_pull_in_opposite_directions() -> None:
    """At v == v_old the gradient is (2 r - 1) times the flow-matching gradient 2 (v - target) / dims: the
    positive branch alone (r = 1) descends the flow-matching loss, the negative branch alone (r = 0) ascends it."""
    x0, eps, t, _, x_t, v_old, _, _ = _hand_made()
    target, n = eps - x0, 4
    for r_value in (1.0, 0.0, 0.75):
        v = v_old.clone().requires_grad_(True)
        r = torch.full((2,), r_value)
        nft_loss(v, v_old, None, x0, x_t, t, r, 1.0, adaptive=False).loss.backward()
        fm_grad = 2 * (v_old - target) / n / 2  # d/dv of mean_B mean_dims (v - target)^2
        torch.testing.assert_close(v.grad, (2 * r_value - 1) * fm_grad)


def test_adaptive_weight_divides_by_a_stop_gradient_mean_abs_error_and_scale_applies() -> None:
    """L+- = mean(e^2) / sg(mean |e|), e = x_t - t v+- - x0; the gradient treats the normaliser as a constant."""
    x0, _, t, tt, x_t, v_old, v, v_ref = _hand_made()
    r, beta, scale = torch.tensor([0.6, 0.1]), 1.0, 5.0
    e_pos = x_t - tt * v - x0
    e_neg = x_t - tt * (2 * v_old - v) - x0
    w_pos = e_pos.detach().abs().mean((1, 2, 3), keepdim=True)
    w_neg = e_neg.detach().abs().mean((1, 2, 3), keepdim=True)
    pos, neg = (e_pos**2 / w_pos).mean((1, 2, 3)), (e_neg**2 / w_neg).mean((1, 2, 3))
    expected = scale * (r * pos + (1 - r) * neg).mean() + 1e-4 * ((v - v_ref) ** 2).mean()
    out = nft_loss(v, v_old, v_ref, x0, x_t, t, r, beta, adaptive=True, scale=scale)
    torch.testing.assert_close(out.loss, expected)
    (grad,) = torch.autograd.grad(out.loss, v)
    (expected_grad,) = torch.autograd.grad(expected, v, retain_graph=True)
    torch.testing.assert_close(grad, expected_grad)
    # Without the stop-gradient, the gradient would differ (the normaliser depends on v).
    live = scale * (r * (e_pos**2 / e_pos.abs().mean((1, 2, 3), keepdim=True)).mean((1, 2, 3))
                    + (1 - r) * (e_neg**2 / e_neg.abs().mean((1, 2, 3), keepdim=True)).mean((1, 2, 3))).mean()
    (live_grad,) = torch.autograd.grad(live, v)
    assert not torch.allclose(grad, live_grad, atol=1e-4)


def test_loss_refuses_a_bad_beta_and_mismatched_shapes() -> None:
    x0, _, t, _, x_t, v_old, v, _ = _hand_made()
    with pytest.raises(ValueError, match="beta=0"):
        nft_loss(v, v_old, None, x0, x_t, t, torch.ones(2), 0.0)
    with pytest.raises(ValueError, match="one shape"):
        nft_loss(v[:, :, :1], v_old, None, x0, x_t, t, torch.ones(2), 1.0)


# --- on the model --------------------------------------------------------------------------------------


def test_a_step_learns_a_high_reward_sample_and_unlearns_a_low_reward_one(tiny, randomise) -> None:
    """One SGD step on one sample's NFT loss: with r = 1 its flow-matching loss (at fixed x_t, t) goes down,
    with r = 0 it goes up."""
    def fm_after_step(r_value: float) -> tuple[float, float]:
        model = tiny()
        add_lora(model, "theta", 4, 8.0)
        randomise(model, "theta", std=0.1)
        params = trainable_parameters(model, "theta")
        add_lora(model, "old", 4, 8.0)
        with torch.no_grad():
            for p_old, p in zip(adapter_parameters(model, "old").values(), params):
                p_old.copy_(p)
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
        with torch.no_grad(), use_adapter(model, "old"):
            v_old = model.velocity(x_t, t, cond)
        with use_adapter(model, "theta"):
            v = model.velocity(x_t, t, cond)
        nft_loss(v, v_old, None, x0, x_t, t, torch.tensor([r_value]), 1.0).loss.backward()
        with torch.no_grad():
            for p in params:
                p -= 1e-2 * p.grad
        return before, fm()

    before, after = fm_after_step(1.0)
    assert after < before
    before, after = fm_after_step(0.0)
    assert after > before


def test_a_few_steps_change_the_adapter_and_the_old_adapter_follows(tiny, tmp_path) -> None:
    model = tiny()
    seen: list[dict] = []
    result = train_nft(model, nft_config(epochs=2, lr=1e-2), tmp_path, callback=seen.append)
    assert (result.step, result.epoch) == (4, 2) and (result.adapter_dir / "adapter.json").is_file()
    assert (tmp_path / CHECKPOINT_DIR / OLD_ADAPTER_DIR / "adapter.json").is_file()
    fresh = tiny()
    add_lora(fresh, "teacher", 4, 8.0, seed=lora_init_seed(0))  # the run's initial LoRA
    trained, initial = _weights(model), _weights(fresh)
    moved = [n for n, v in trained.items() if "lora_B" in n and not torch.equal(initial[n], v)]  # B starts at 0
    assert len(moved) >= 6  # of 7 (the last block's add_q_proj feeds nothing the loss sees)
    metrics = seen[-1]
    assert {"loss", "nft/positive", "nft/negative", "nft/optimality", "nft/ref_mse", "reward/prefer",
            "nft/old_decay", "advantage_abs", "grad_norm"} <= set(metrics)
    assert metrics["nft/old_decay"] == pytest.approx(0.004)  # min(0.001 x 4 steps, 0.5)
    # The old adapter is the soft update of its previous value towards the trained weights, d = 0.004 < 1:
    # it sits between the two, close to the trained weights.
    old = {n.replace(".teacher_old.", ".teacher."): p for n, p in _weights(model, "teacher_old").items()}
    gap = max(float((old[n] - p).abs().max()) for n, p in trained.items())
    move = max(float(p.abs().max()) for n, p in trained.items() if "lora_B" in n)
    assert 0 < gap < 0.05 * move


def test_old_decay_zero_keeps_the_old_adapter_equal_to_the_policy(tiny, tmp_path) -> None:
    model = tiny()
    train_nft(model, nft_config(epochs=1, lr=1e-2, old_decay_rate=0.0), tmp_path)
    old = {n.replace(".teacher_old.", ".teacher."): p for n, p in _weights(model, "teacher_old").items()}
    for name, value in _weights(model).items():
        torch.testing.assert_close(old[name], value)


def test_nft_mix_with_cfg_trains(tiny, tmp_path) -> None:
    """NFT-Mix (two rewards with weights) and a guided rollout run; every reward is logged."""
    cfg = nft_config(rewards={"prefer": 1.0, "quality": 0.5}, prompt_tasks={"prefer": 1.0}, guidance=2.0,
                     adaptive_weight=False, beta=0.1)
    seen: list[dict] = []
    train_nft(tiny(), cfg, tmp_path, callback=seen.append)
    assert {"reward/prefer", "reward/quality", "reward/total"} <= set(seen[-1])


def test_config_checks_name_the_field() -> None:
    with pytest.raises(ValueError, match="timesteps_per_sample=11 is invalid"):
        NFTConfig(timesteps_per_sample=11)
    with pytest.raises(ValueError, match="group_size=3 is invalid"):
        NFTConfig(group_size=3)
    with pytest.raises(ValueError, match="rewards"):
        NFTConfig(rewards={"nope": 1.0})
    with pytest.raises(TypeError, match="needs an NFTConfig"):
        from flowopd.methods.grpo.config import GRPOConfig
        from flowopd.methods.nft.trainer import NFTTrainer

        NFTTrainer(None, GRPOConfig(), "unused")


def test_train_nft_from_the_command_line(cli, small_model_dir, tmp_path) -> None:
    code, out, _ = cli("train", "nft", "--help")
    assert code == 0 and "example: flowopd train nft" in out and "--record" in out
    config = tmp_path / "nft.json"
    nft_config().to_json(config)
    code, out, err = cli("train", "nft", "--config", config, "--out", tmp_path / "nft", "--model", small_model_dir)
    assert code == 0, err
    assert f"adapter written to {tmp_path / 'nft' / 'adapter'}" in out
    config.write_text('{"kind": "nft", "beta": 0}')
    code, _, err = cli("train", "nft", "--config", config, "--out", tmp_path / "bad")
    assert code == 2 and "beta=0 is invalid" in err, err
