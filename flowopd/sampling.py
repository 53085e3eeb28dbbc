"""Samplers: the deterministic ODE (Euler) and Flow-GRPO's SDE with per-step Gaussian log-probs.

Convention (diffusers): sigma = t in [0, 1], t = 1 is noise, ``x_t = (1 - t) x_data + t eps`` and the
model predicts ``v = eps - x_data``; a step goes from ``sigma`` down to ``sigma_next``. Sigma
schedules come from diffusers' ``FlowMatchEulerDiscreteScheduler`` so SD3.5 and the tiny model share them.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from .models.base import FlowModel, PromptEmbeds

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class SDEStep:
    sample: torch.Tensor  # [B, ...] x at sigma_next
    log_prob: torch.Tensor  # [B] Gaussian log-density of `sample`, averaged over non-batch dims
    mean: torch.Tensor  # [B, ...] mean of the transition
    std: torch.Tensor  # [B, 1, ...] transition std, std_dev_t * sqrt(sigma - sigma_next)


@dataclass
class Trajectory:
    latents: torch.Tensor  # [B, N + 1, C, H, W]: x at every sigma, noise first, final sample last
    log_probs: torch.Tensor  # [B, N] log-prob of each transition under the sampling policy
    sigmas: torch.Tensor  # [N + 1] the schedule, ending at 0

    @property
    def final(self) -> torch.Tensor:
        return self.latents[:, -1]


def sigma_schedule(num_steps: int, shift: float) -> torch.Tensor:
    """The ``num_steps + 1`` sigmas (ending in 0) of ``FlowMatchEulerDiscreteScheduler(shift=shift)``."""
    if not isinstance(num_steps, int) or num_steps < 1 or num_steps > 1000:
        raise ValueError(f"step count {num_steps!r} is impossible: use an integer from 1 to 1000")
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    scheduler.set_timesteps(num_steps, device="cpu")
    return scheduler.sigmas.float()


def _per_sample(value, like: torch.Tensor) -> torch.Tensor:
    """A float or [B] tensor as fp32 [B, 1, 1, ...] (a float is repeated over the batch of ``like``)."""
    t = torch.as_tensor(value, dtype=torch.float32, device=like.device)
    t = t.reshape(-1) if t.ndim else t.reshape(1)
    return t.reshape(-1, *([1] * (like.ndim - 1))).expand(like.shape[0], *([1] * (like.ndim - 1)))


def sde_step(v: torch.Tensor, x: torch.Tensor, sigma, sigma_next, noise_level: float, *,
             sigma_max: float | None = None, prev_sample: torch.Tensor | None = None,
             generator: torch.Generator | None = None, antithetic: bool = False) -> SDEStep:
    """One Euler-Maruyama step of Flow-GRPO's SDE (docs/method.md, "SDE step"), in fp32.

    ``std_dev_t = noise_level * sqrt(sigma / (1 - s))`` with ``s = sigma`` below 1 and ``s = sigma_max``
    (the largest schedule sigma below 1) at sigma == 1, where the formula would divide by zero.
    The log-prob is evaluated at ``prev_sample`` when given (to re-score a stored rollout), else at
    the new sample. With ``noise_level == 0`` the step is the Euler ODE step and the log-prob is 0.
    ``antithetic``: rows 2k and 2k + 1 get opposite noise (z and -z); each row is still a sample of the step.

    Args:
        v: velocity [B, ...]. x: current latents [B, ...].
        sigma, sigma_next: floats or [B] tensors, sigma_next < sigma.
    """
    x32, v32 = x.float(), v.float()
    s = _per_sample(sigma, x32)
    s_next = _per_sample(sigma_next, x32)
    dt = s_next - s
    if noise_level == 0:  # the ODE: no sigma_max needed (and 0 * sqrt(1 / 0) would be NaN at sigma == 1)
        s_hat = torch.zeros_like(s)
    elif torch.any(s >= 1):
        if sigma_max is None:
            raise ValueError("sde_step at sigma == 1 needs sigma_max (the largest schedule sigma below 1)")
        s_hat = torch.where(s < 1, s, torch.full_like(s, float(sigma_max)))
    else:
        s_hat = s
    std_dev_t = noise_level * torch.sqrt(s / (1 - s_hat))
    mean = x32 * (1 + std_dev_t**2 / (2 * s) * dt) + v32 * (1 + std_dev_t**2 * (1 - s) / (2 * s)) * dt
    std = std_dev_t * torch.sqrt(-dt)
    if prev_sample is not None:
        sample = prev_sample.float()
    elif noise_level == 0:
        sample = mean
    else:
        noise = torch.randn(x32.shape, generator=generator, device="cpu" if generator is None
                            else generator.device, dtype=torch.float32).to(x32.device)
        if antithetic:
            if x32.shape[0] % 2:
                raise ValueError(f"antithetic noise pairs rows: got an odd batch of {x32.shape[0]}")
            noise[1::2] = -noise[0::2]
        sample = mean + std * noise
    dims = tuple(range(1, x32.ndim))
    if noise_level == 0:
        log_prob = torch.zeros(x32.shape[0], device=x32.device)
    else:
        log_prob = (-((sample.detach() - mean) ** 2) / (2 * std**2) - torch.log(std) - _LOG_SQRT_2PI).mean(dims)
    return SDEStep(sample=sample, log_prob=log_prob, mean=mean, std=std)


def std_dev_t(step: SDEStep, sigma, sigma_next) -> torch.Tensor:
    """The SDE's ``std_dev_t`` [B, 1, ...] of a step, from its transition std ``std_dev_t * sqrt(sigma - sigma_next)``.

    Args:
        step: an :func:`sde_step` result. sigma, sigma_next: the step's floats or [B] tensors.
    """
    gap = torch.as_tensor(sigma, dtype=torch.float32) - torch.as_tensor(sigma_next, dtype=torch.float32)
    gap = gap.to(step.std.device).reshape(-1, *([1] * (step.std.ndim - 1)))
    return step.std / gap.sqrt()


def initial_noise(shape: tuple[int, ...], seeds: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Starting noise [len(seeds), *shape], one generator per image so a seed gives the same image in any batch."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]).to(device)


def sigma_max_of(sigmas: torch.Tensor) -> float | None:
    """Flow-GRPO's ``sigmas[1]``: the largest schedule sigma below 1, which `sde_step` needs at sigma == 1
    (0 for a one-step schedule)."""
    below = sigmas[(sigmas < 1) & (sigmas >= 0)]
    return float(below.max()) if len(below) else None


@torch.no_grad()
def sample(model: FlowModel, cond: PromptEmbeds, *, seeds: list[int], num_steps: int, guidance: float,
           noise_level: float = 0.0, generator: torch.Generator | None = None,
           uncond: PromptEmbeds | None = None, sde_steps: Collection[int] | None = None,
           antithetic: bool = False) -> Trajectory:
    """Sample latents for a batch of prompt embeddings; ``noise_level=0`` is the deterministic ODE.

    ``sde_steps``: indices of the steps that draw SDE noise; the others are ODE steps (noise 0, log-prob 0)
    even when ``noise_level > 0``. None: every step.
    ``antithetic``: rows 2k and 2k + 1 get opposite SDE noise at every step (see :func:`sde_step`).
    Returns the whole trajectory with the policy's log-probs (zeros for the ODE steps).
    """
    if len(seeds) != len(cond):
        raise ValueError(f"got {len(seeds)} seeds for {len(cond)} prompts: pass one seed per prompt")
    if guidance < 0:
        raise ValueError(f"guidance {guidance} must be >= 0 (1.0 disables classifier-free guidance)")
    sigmas = sigma_schedule(num_steps, model.shift)
    sigma_max = sigma_max_of(sigmas)
    if uncond is None and guidance != 1.0:
        uncond = model.uncond_embeds(len(cond))
    x = initial_noise(model.latent_shape, seeds, model.device)
    latents, log_probs = [x], []
    for i in range(num_steps):
        v = model.velocity(x, sigmas[i], cond, uncond, guidance)
        level = noise_level if sde_steps is None or i in sde_steps else 0.0
        step = sde_step(v, x, sigmas[i], sigmas[i + 1], level, sigma_max=sigma_max, generator=generator,
                        antithetic=antithetic)
        x = step.sample
        latents.append(x)
        log_probs.append(step.log_prob)
    return Trajectory(torch.stack(latents, 1), torch.stack(log_probs, 1), sigmas)


def generate(model: FlowModel, prompts: list[str], *, seeds: list[int], num_steps: int = 20,
             guidance: float = 4.5, batch_size: int = 64):
    """Images [B, 3, H, W] in [0, 1] from ``prompts`` with the deterministic ODE sampler."""
    outs = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i:i + batch_size]
            traj = sample(model, model.encode_prompts(chunk), seeds=seeds[i:i + batch_size],
                          num_steps=num_steps, guidance=guidance)
            outs.append(model.decode(traj.final))
    return torch.cat(outs)
