"""Samplers: ``sde_step`` against docs/method.md, "SDE step" (float64 reference), the schedule, ODE and SDE rollouts."""

from __future__ import annotations

import math

import pytest
import torch

from flowopd.sampling import generate, initial_noise, sample, sde_step, sigma_schedule

# docs/method.md, "Conventions": FlowMatchEulerDiscreteScheduler(shift=3.0).set_timesteps(10)
SPEC_SIGMAS_10 = [1.0, .9601, .9133, .8577, .7904, .7073, .6022, .4649, .2780, .0089, 0.0]
PROMPTS = ["a photo of a red circle", 'a sign that says "TEA"', "a photo of two squares"]


def reference_step(v, x, sigma, sigma_next, a, sigma_max=None, x_next=None):
    """docs/method.md, "SDE step", in float64, written out independently: (mean, std, log_prob at x_next)."""
    v, x = v.double(), x.double()
    shape = (-1,) + (1,) * (x.ndim - 1)
    s = torch.as_tensor(sigma, dtype=torch.float64).reshape(shape)
    s_next = torch.as_tensor(sigma_next, dtype=torch.float64).reshape(shape)
    s_hat = torch.where(s < 1, s, torch.full_like(s, sigma_max if sigma_max is not None else float("nan")))
    dt = s_next - s
    std_dev_t = a * torch.sqrt(s / (1 - s_hat))
    mean = x * (1 + std_dev_t**2 / (2 * s) * dt) + v * (1 + std_dev_t**2 * (1 - s) / (2 * s)) * dt
    std = std_dev_t * torch.sqrt(-dt)
    log_prob = None
    if x_next is not None:
        dens = -((x_next.double() - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
        log_prob = dens.flatten(1).mean(1)
    return mean, std, log_prob


def _xv(batch: int = 3, seed: int = 0, shape=(3, 4, 4)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=g), torch.randn(batch, *shape, generator=g)


# --- sde_step ---------------------------------------------------------------------------------------------


def test_sde_step_matches_reference_per_sample_sigmas() -> None:
    x, v = _xv()
    sigma, sigma_next = torch.tensor([0.9, 0.5, 0.2]), torch.tensor([0.8, 0.3, 0.0])
    prev = x + 0.1 * torch.randn_like(x)
    step = sde_step(v, x, sigma, sigma_next, 0.7, prev_sample=prev)
    mean, std, log_prob = reference_step(v, x, sigma, sigma_next, 0.7, x_next=prev)
    assert step.mean.dtype == torch.float32 and step.std.shape == (3, 1, 1, 1) and step.log_prob.shape == (3,)
    torch.testing.assert_close(step.mean.double(), mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step.std.double(), std, rtol=1e-5, atol=1e-6)
    # std is std_dev_t * sqrt(sigma - sigma_next) with std_dev_t = a sqrt(sigma / (1 - sigma))
    assert step.std[1].item() == pytest.approx(0.7 * math.sqrt(0.5 / 0.5) * math.sqrt(0.2), rel=1e-5)
    torch.testing.assert_close(step.log_prob.double(), log_prob, rtol=1e-5, atol=1e-4)
    assert torch.equal(step.sample, prev)  # re-scoring keeps the given sample


def test_sde_step_float_sigmas_and_log_prob_at_new_sample() -> None:
    x, v = _xv(batch=2, seed=1)
    step = sde_step(v, x, 0.6, 0.45, 0.7, generator=torch.Generator().manual_seed(3))
    mean, std, log_prob = reference_step(v, x, [0.6, 0.6], [0.45, 0.45], 0.7, x_next=step.sample)
    torch.testing.assert_close(step.mean.double(), mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(step.log_prob.double(), log_prob, rtol=1e-5, atol=1e-4)
    assert not torch.equal(step.sample, step.mean)
    # the log-prob is averaged over dims, not summed: it stays O(1) whatever the latent size
    assert -5 < step.log_prob.min() and step.log_prob.max() < 5


def test_sde_step_at_sigma_one_uses_sigma_max() -> None:
    x, v = _xv(batch=2, seed=2)
    sigma, sigma_next, sigma_max = torch.tensor([1.0, 0.5]), torch.tensor([0.9601, 0.4]), 0.9601
    prev = x.clone()
    step = sde_step(v, x, sigma, sigma_next, 0.7, sigma_max=sigma_max, prev_sample=prev)
    mean, std, log_prob = reference_step(v, x, sigma, sigma_next, 0.7, sigma_max=sigma_max, x_next=prev)
    assert torch.isfinite(step.std).all() and torch.isfinite(step.log_prob).all()
    assert step.std[0].item() == pytest.approx(0.7 * math.sqrt(1 / (1 - sigma_max)) * math.sqrt(1 - 0.9601), rel=1e-5)
    torch.testing.assert_close(step.std.double(), std, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(step.mean.double(), mean, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(step.log_prob.double(), log_prob, rtol=1e-5, atol=1e-4)


def test_sde_step_at_sigma_one_needs_sigma_max() -> None:
    x, v = _xv()
    with pytest.raises(ValueError, match="sigma_max"):
        sde_step(v, x, 1.0, 0.9, 0.7)
    with pytest.raises(ValueError, match="sigma_max"):
        sde_step(v, x, torch.tensor([0.5, 1.0, 0.5]), torch.tensor([0.4, 0.9, 0.4]), 0.7)


@pytest.mark.parametrize("sigma, sigma_next, sigma_max", [(0.7, 0.5, None), (1.0, 0.9, 0.9), (1.0, 0.0, None)])
def test_noise_level_zero_is_the_euler_step(sigma: float, sigma_next: float, sigma_max: float | None) -> None:
    x, v = _xv()
    step = sde_step(v, x, sigma, sigma_next, 0.0, sigma_max=sigma_max)  # the ODE needs no sigma_max
    torch.testing.assert_close(step.sample, x + (sigma_next - sigma) * v)
    torch.testing.assert_close(step.mean, step.sample)
    assert torch.equal(step.log_prob, torch.zeros(3))
    assert torch.equal(step.std, torch.zeros(3, 1, 1, 1))


def test_sde_samples_follow_the_gaussian() -> None:
    """Monte-Carlo check: (sample - mean) / std is standard normal, and the mean log-prob is its expectation."""
    x, v = _xv(batch=4, seed=4, shape=(3, 64, 64))
    step = sde_step(v, x, 0.7073, 0.6022, 0.7, generator=torch.Generator().manual_seed(0))
    mean, std, _ = reference_step(v, x, [0.7073] * 4, [0.6022] * 4, 0.7)
    z = (step.sample.double() - mean) / std  # standardised with the reference, not the step's own numbers
    assert abs(z.mean().item()) < 0.02 and abs(z.std().item() - 1) < 0.02
    assert abs((z**4).mean().item() - 3) < 0.15  # Gaussian kurtosis
    z = z.float()
    expected = -0.5 - torch.log(std.flatten().float()) - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(step.log_prob, expected, atol=0.03, rtol=0)
    # a sample farther from the mean is less likely
    far = sde_step(v, x, 0.7073, 0.6022, 0.7, prev_sample=step.mean + 2 * step.std * z)
    assert (far.log_prob < step.log_prob).all()


def test_sde_step_generator_reproducible() -> None:
    x, v = _xv()
    a = sde_step(v, x, 0.5, 0.4, 0.7, generator=torch.Generator().manual_seed(9)).sample
    b = sde_step(v, x, 0.5, 0.4, 0.7, generator=torch.Generator().manual_seed(9)).sample
    c = sde_step(v, x, 0.5, 0.4, 0.7, generator=torch.Generator().manual_seed(10)).sample
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_antithetic_steps_pair_opposite_noise() -> None:
    """Rows 2k and 2k + 1 get z and -z; each row alone is still the step's Gaussian (same first row)."""
    x, v = _xv(batch=4, seed=4, shape=(3, 64, 64))
    x, v = x[[0, 0, 1, 1]], v[[0, 0, 1, 1]]
    plain = sde_step(v, x, 0.7073, 0.6022, 0.7, generator=torch.Generator().manual_seed(0))
    anti = sde_step(v, x, 0.7073, 0.6022, 0.7, generator=torch.Generator().manual_seed(0), antithetic=True)
    z = (anti.sample - anti.mean) / anti.std
    torch.testing.assert_close(z[1], -z[0])
    torch.testing.assert_close(z[3], -z[2])
    assert torch.equal(anti.sample[0], plain.sample[0]) and torch.equal(anti.sample[2], plain.sample[2])
    torch.testing.assert_close(anti.log_prob[1], anti.log_prob[0])  # a Gaussian is symmetric
    with pytest.raises(ValueError, match="odd batch of 3"):
        sde_step(v[:3], x[:3], 0.7073, 0.6022, 0.7, antithetic=True)


# --- schedule ---------------------------------------------------------------------------------------------


def test_sigma_schedule_matches_spec() -> None:
    sigmas = sigma_schedule(10, 3.0)
    assert sigmas.dtype == torch.float32 and sigmas.shape == (11,)
    assert sigmas.tolist() == pytest.approx(SPEC_SIGMAS_10, abs=1e-3)
    s40 = sigma_schedule(40, 3.0)
    assert len(s40) == 41 and s40[:2].tolist() == pytest.approx([1.0, .9913], abs=1e-3)
    assert s40[-3:].tolist() == pytest.approx([.0810, .0089, 0.0], abs=1e-3)
    assert (sigma_schedule(7, 1.0).diff() < 0).all()


@pytest.mark.parametrize("steps", [0, -1, 1001, 2.5, "10"])
def test_bad_step_counts(steps) -> None:
    with pytest.raises(ValueError, match="step count"):
        sigma_schedule(steps, 3.0)


# --- ODE and SDE rollouts with the small random model -----------------------------------------------------


def test_ode_trajectory_shapes_and_euler_steps(small_model) -> None:
    cond = small_model.encode_prompts(PROMPTS[:2])
    with torch.no_grad():
        traj = sample(small_model, cond, seeds=[1, 2], num_steps=3, guidance=1.0)
    assert traj.latents.shape == (2, 4, 3, 32, 32) and traj.latents.dtype == torch.float32
    assert traj.log_probs.shape == (2, 3) and torch.equal(traj.log_probs, torch.zeros(2, 3))
    assert traj.sigmas[0] == 1 and traj.sigmas[-1] == 0 and len(traj.sigmas) == 4
    assert torch.equal(traj.latents[:, 0], initial_noise((3, 32, 32), [1, 2]))
    assert torch.equal(traj.final, traj.latents[:, -1])
    with torch.no_grad():
        for i in range(3):
            v = small_model.velocity(traj.latents[:, i], traj.sigmas[i], cond)
            euler = traj.latents[:, i] + (traj.sigmas[i + 1] - traj.sigmas[i]) * v
            torch.testing.assert_close(traj.latents[:, i + 1], euler, atol=1e-5, rtol=1e-5)


def test_cfg_combines_conditional_and_unconditional(small_model) -> None:
    cond = small_model.encode_prompts(PROMPTS[:1])
    with torch.no_grad():
        traj = sample(small_model, cond, seeds=[4], num_steps=1, guidance=3.0)
        x = traj.latents[:, 0]
        sigma = torch.ones(1)
        v_c = small_model.raw_velocity(x, sigma, cond)
        v_u = small_model.raw_velocity(x, sigma, small_model.encode_prompts([""]))
    torch.testing.assert_close(traj.final, x - (v_u + 3.0 * (v_c - v_u)), atol=1e-5, rtol=1e-5)


def test_sde_rollout_log_probs_can_be_rescored(small_model) -> None:
    cond = small_model.encode_prompts(PROMPTS[:2])
    kwargs = dict(seeds=[1, 2], num_steps=4, guidance=2.0, noise_level=0.7)
    with torch.no_grad():
        traj = sample(small_model, cond, generator=torch.Generator().manual_seed(0), **kwargs)
        again = sample(small_model, cond, generator=torch.Generator().manual_seed(0), **kwargs)
        uncond = small_model.uncond_embeds(2)
        sigma_max = traj.sigmas[1].item()
        for i in range(4):
            v = small_model.velocity(traj.latents[:, i], traj.sigmas[i], cond, uncond, 2.0)
            step = sde_step(v, traj.latents[:, i], traj.sigmas[i], traj.sigmas[i + 1], 0.7,
                            sigma_max=sigma_max, prev_sample=traj.latents[:, i + 1])
            torch.testing.assert_close(step.log_prob, traj.log_probs[:, i], atol=1e-4, rtol=1e-4)
    assert torch.isfinite(traj.log_probs).all() and (traj.log_probs != 0).all()
    assert torch.equal(traj.latents, again.latents)


def test_sde_steps_make_the_other_steps_deterministic(small_model) -> None:
    """Rollouts that leave their untrained last step noise-free: earlier steps are the same SDE draws,
    the last one is the Euler step with log-prob 0."""
    cond = small_model.encode_prompts(PROMPTS[:2])
    kwargs = dict(seeds=[1, 2], num_steps=4, guidance=1.0, noise_level=0.7)
    with torch.no_grad():
        full = sample(small_model, cond, generator=torch.Generator().manual_seed(0), **kwargs)
        clean = sample(small_model, cond, generator=torch.Generator().manual_seed(0), sde_steps=range(3), **kwargs)
        v = small_model.velocity(clean.latents[:, 3], clean.sigmas[3], cond)
    assert torch.equal(clean.latents[:, :4], full.latents[:, :4])
    torch.testing.assert_close(clean.final, clean.latents[:, 3] - clean.sigmas[3] * v, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(clean.final, full.final)
    assert torch.equal(clean.log_probs[:, :3], full.log_probs[:, :3]) and (clean.log_probs[:, 3] == 0).all()


def test_an_sde_window_in_the_middle_is_the_ode_around_it(small_model) -> None:
    """Steps before and after the window are the ODE's (the same latents as noise level 0 up to the window);
    the window's steps draw noise and carry the log-probs of their stored transitions."""
    cond = small_model.encode_prompts(PROMPTS[:2])
    kwargs = dict(seeds=[1, 2], num_steps=4, guidance=1.0)
    with torch.no_grad():
        ode = sample(small_model, cond, **kwargs)
        window = sample(small_model, cond, noise_level=0.7, generator=torch.Generator().manual_seed(0),
                        sde_steps=[1, 2], **kwargs)
        assert torch.equal(window.latents[:, :2], ode.latents[:, :2])  # step 0 is the ODE's
        assert not torch.allclose(window.latents[:, 2], ode.latents[:, 2])
        for i in (1, 2):
            v = small_model.velocity(window.latents[:, i], window.sigmas[i], cond)
            step = sde_step(v, window.latents[:, i], window.sigmas[i], window.sigmas[i + 1], 0.7,
                            sigma_max=window.sigmas[1].item(), prev_sample=window.latents[:, i + 1])
            torch.testing.assert_close(step.log_prob, window.log_probs[:, i], atol=1e-4, rtol=1e-4)
        v = small_model.velocity(window.latents[:, 3], window.sigmas[3], cond)
    torch.testing.assert_close(window.final, window.latents[:, 3] - window.sigmas[3] * v, atol=1e-5, rtol=1e-5)
    assert (window.log_probs[:, [0, 3]] == 0).all() and (window.log_probs[:, [1, 2]] != 0).all()


@pytest.mark.parametrize("noise_level", [0.0, 0.7])
def test_one_step_schedule(small_model, noise_level: float) -> None:
    """One step goes from sigma 1 straight to 0; the SDE then uses sigma_max = 0 (Flow-GRPO's sigmas[1])."""
    cond = small_model.encode_prompts(PROMPTS[:1])
    traj = sample(small_model, cond, seeds=[3], num_steps=1, guidance=1.0, noise_level=noise_level,
                  generator=torch.Generator().manual_seed(0))
    assert traj.latents.shape == (1, 2, 3, 32, 32) and torch.isfinite(traj.latents).all()
    assert torch.isfinite(traj.log_probs).all() and (traj.log_probs != 0).all() == (noise_level > 0)


def test_same_seed_same_image_in_any_batch(small_model) -> None:
    together = generate(small_model, PROMPTS, seeds=[5, 6, 7], num_steps=3, guidance=3.0)
    alone = generate(small_model, PROMPTS[1:2], seeds=[6], num_steps=3, guidance=3.0)
    chunked = generate(small_model, PROMPTS, seeds=[5, 6, 7], num_steps=3, guidance=3.0, batch_size=2)
    torch.testing.assert_close(alone[0], together[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(chunked, together, atol=1e-5, rtol=0)
    other = generate(small_model, PROMPTS[1:2], seeds=[8], num_steps=3, guidance=3.0)
    assert (other[0] - together[1]).abs().max() > 0.05


def test_generate_range_and_shape(small_model) -> None:
    images = generate(small_model, PROMPTS, seeds=[0, 1, 2], num_steps=2)
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert images.std() > 0.01  # not a constant image


@pytest.mark.parametrize("steps", [0, 1001, 2.5])
def test_generate_rejects_bad_step_counts(small_model, steps) -> None:
    with pytest.raises(ValueError, match="step count"):
        generate(small_model, PROMPTS[:1], seeds=[0], num_steps=steps)


def test_sample_rejects_bad_arguments(small_model) -> None:
    cond = small_model.encode_prompts(PROMPTS[:2])
    with pytest.raises(ValueError, match="one seed per prompt"):
        sample(small_model, cond, seeds=[1], num_steps=2, guidance=1.0)
    with pytest.raises(ValueError, match="guidance"):
        sample(small_model, cond, seeds=[1, 2], num_steps=2, guidance=-1.0)
