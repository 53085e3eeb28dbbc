"""The Advantage Weighted Matching teacher's config (``kind="awm"``): tiny-world defaults, ``sd35_medium()`` for
SD3.5 Medium (scxue/advantage_weighted_matching's SD3 script), help and bounds on every field, validation naming
the field and the fix.

Importing it imports no torch. The method: docs/method.md, "AWM".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...config.base import fail, option
from ...config.choices import AWM_WEIGHTINGS, EMA_TARGET_SCHEDULES
from ...config.fields import sd35_reward_overrides
from ...config.rl import SD35_DECODE_CHUNK, ForwardRLConfig
from ...models.presets import SD35_MEDIUM

__all__ = ["AWMConfig", "RELEASED_REF_WEIGHTS", "released_ref_weight"]
# The KL-to-base weight (beta) of AWM's released SD3 configs, by the reward a teacher is trained on (the tiny
# world's stand-ins take their task's): GenEval 0.001, OCR 0.003, PickScore 0.0001; other rewards: 0.003.
RELEASED_REF_WEIGHTS = {"geneval": 0.001, "compose": 0.001, "ocr": 0.003, "text": 0.003, "pickscore": 0.0001,
                        "prefer": 0.0001}


def released_ref_weight(rewards: dict) -> float:
    """The released KL weight of a teacher on ``rewards`` (the smallest of its rewards', for a mix).

    Example:
        >>> released_ref_weight({"prefer": 1.0}), released_ref_weight({"ocr": 1.0, "geneval": 1.0})
        (0.0001, 0.001)
    """
    return min(RELEASED_REF_WEIGHTS.get(name.split(":")[0], 0.003) for name in rewards) if rewards else 0.003


@dataclass
class AWMConfig(ForwardRLConfig, kind="awm"):
    """An Advantage Weighted Matching teacher (arXiv 2509.25050; docs/method.md, "AWM") on one reward, or on several
    with weights: ODE rollouts of the policy, group advantages, and an advantage-weighted flow-matching loss on
    the clean samples (a PPO-clipped ratio of flow-matching "log-probs"), with pulls towards the base and an EMA.

    Rollout, batch, optimiser and LoRA fields and their checks are
    :class:`flowopd.config.rl.ForwardRLConfig`'s.
    """

    # rollouts (re-declared for their own help; the other shared fields are ForwardRLConfig's)
    num_steps: int = option(10, "ODE (Euler) steps of a rollout; its sigmas are the noise levels AWM trains at (the "
                            "code: 14 SA-Solver steps)", min=1, max=1000,
                            group="rollouts")
    guidance: float = option(1.0, "CFG scale of the rollouts and of the trained velocity; 1.0 = CFG-free, as AWM's "
                             "code trains; > 1 trains the guided velocity, as Flow-GRPO's code does", min=0,
                             group="rollouts")
    # AWM
    rewards: dict = option({"prefer": 1.0}, "reward name -> weight; several rewards at once is AWM-Mix", group="AWM")
    prompt_tasks: dict = option({"prefer": 1.0}, "task -> sampling weight of its train prompts", group="AWM")
    adv_clip: float = option(5.0, "group advantages are clipped to +-adv_clip before weighting the loss (the code's "
                             "adv_clip_max 5)", min=0, min_open=True, group="AWM")
    global_std: bool = option(True, "normalise advantages by the std of all rewards (the code), else per group",
                              group="AWM")
    clip_range: float = option(1.0, "PPO clip of the ratio exp(logp - logp_old): max(-A ratio, -A clip(ratio, "
                               "1 - c, 1 + c)) (the code's 1; logp = -mean (v - (eps - x0))^2)", min=0,
                               min_open=True, group="AWM")
    timesteps_per_sample: int = option(4, "noise levels each clean sample trains at, drawn without replacement from "
                                       "the rollout's sigmas, with fresh noise each (the code: 6)", min=1,
                                       group="AWM")
    ref_weight: float = option(0.003, "weight of the pull towards the base, mean (v - v_base)^2 (the code's KL beta "
                               "0.003); 0 turns it off", min=0, group="AWM")
    ema_weight: float = option(0.1, "weight of the pull towards an EMA of the policy, mean (v - v_ema)^2 (Flow-"
                               "Factory's recommended 0.1); 0 turns it off", min=0, group="AWM")
    ema_target_decay: float = option(0.9, "the policy EMA the pull aims at: ema <- d ema + (1 - d) theta after each "
                                     "epoch (0 = it copies the policy)", min=0, max=1, max_open=True, group="AWM")
    ema_target_schedule: str = option("constant", "decay of the EMA target: constant (ema_target_decay) | linear "
                                      "(min(ema_target_decay, 0.001 x optimizer step), the released code's)",
                                      choices=EMA_TARGET_SCHEDULES, group="AWM")
    weighting: str = option("uniform", "the log-prob: uniform (-mse) | ghuber (the released -t ((mse + 1e-10)^p - "
                            "1e-10^p) / p, p = ghuber_power); docs/method.md, AWM", choices=AWM_WEIGHTINGS,
                            group="AWM")
    ghuber_power: float = option(0.25, "the power p of the ghuber weighting (the code's 0.25)", min=0, max=1,
                                 min_open=True, group="AWM")
    advantage_max: float | None = option(None, "scale the clipped advantages to +-advantage_max (A / adv_clip x "
                                         "advantage_max; the code's 1); None = unscaled", min=0, min_open=True,
                                         group="AWM")
    first_level: int = option(0, "the first rollout-sigma index a sample trains at; 1 = never t = 1 (the code's "
                              "discrete_wo_init)", min=0, group="AWM")
    level_fraction: float = option(1.0, "the fraction of the rollout's noise levels trained at, the first ones (the "
                                   "code: 0.9)", min=0, max=1, min_open=True, group="AWM")
    sample_from_ema: bool = option(False, "roll out from the policy EMA (the code's off_policy) instead of the "
                                   "current policy", group="AWM")
    adapter_name: str = option("teacher", "name of the trained LoRA adapter (its EMA target is <name>_old)",
                               group="AWM")
    def check(self) -> None:
        super().check()
        levels = self.trained_levels()
        if len(levels) < self.timesteps_per_sample:
            fail("timesteps_per_sample", self.timesteps_per_sample,
                 f"only {len(levels)} noise levels are trained (first_level={self.first_level}, level_fraction="
                 f"{self.level_fraction} of num_steps={self.num_steps}): lower it or widen the range")

    def trained_levels(self) -> range:
        """The rollout-sigma indices a sample may train at: ``first_level`` up to the first ``level_fraction``."""
        return range(self.first_level, max(self.first_level, int(self.num_steps * self.level_fraction)))

    @classmethod
    def released(cls, **overrides: Any) -> AWMConfig:
        """AWM's released recipe (its SD3 configs) at the tiny world's size: the ghuber weighting (p 0.25),
        advantages scaled to +-1, a pull of weight 1 to an EMA of decay min(0.3, 0.001 step), the KL to the base
        of the task's released config, noise levels 1 to 90 % of the rollout (never t = 1)."""
        values = dict(weighting="ghuber", ghuber_power=0.25, advantage_max=1.0, ema_weight=1.0, ema_target_decay=0.3,
                      ema_target_schedule="linear", first_level=1, level_fraction=0.9,
                      ref_weight=released_ref_weight(overrides.get("rewards", cls.field_info("rewards").default)))
        return cls(**{**values, **overrides})

    @classmethod
    def sd35_medium(cls, **overrides: Any) -> AWMConfig:
        """AWM's SD3.5-M settings (its SD3 configs): lr 3e-4, group 24, 14 CFG-free ODE steps (the code's
        SA-Solver; Euler here) with 6 trained noise levels per sample among levels 1-11, the released recipe
        (:meth:`released`: ghuber, advantages to +-1, the EMA pull, the task's KL weight), LoRA r 32 / alpha 64."""
        base = dict(model=SD35_MEDIUM, num_steps=14, eval_steps=40, guidance=1.0, lora_rank=32, lora_alpha=64.0,
                    mixed_precision="fp16",
                    decode_chunk=SD35_DECODE_CHUNK, checkpoint_every=60, epochs=1000, batch_size=48, group_size=24,
                    train_batch_size=8, lr=3e-4, timesteps_per_sample=6)
        rewards = sd35_reward_overrides(cls, overrides)
        return cls.released(**{**base, **rewards, **overrides})
