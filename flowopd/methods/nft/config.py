"""The DiffusionNFT teacher's config (``kind="nft"``): tiny-world defaults, ``sd35_medium()`` for SD3.5 Medium
(DiffusionNFT's ``config/nft.py``), help and bounds on every field, validation naming the field and the fix.

Its shared fields are :class:`flowopd.config.rl.ForwardRLConfig`'s; importing it imports no torch. The method:
docs/method.md, "DiffusionNFT".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...config.base import option
from ...config.fields import sd35_reward_overrides
from ...config.rl import SD35_DECODE_CHUNK, ForwardRLConfig
from ...models.presets import SD35_MEDIUM

__all__ = ["NFTConfig"]


@dataclass
class NFTConfig(ForwardRLConfig, kind="nft"):
    """A DiffusionNFT teacher (arXiv 2509.16117; docs/method.md, "DiffusionNFT") on one reward, or on several with
    weights
    (the NFT-Mix baseline): ODE rollouts, optimality weights from group advantages, the implicit positive and
    negative policies of the trained and the frozen old adapter, trained on the forward (noising) process.

    Rollout, batch, optimiser and LoRA fields and their checks are :class:`ForwardRLConfig`'s.
    """

    # rollouts (re-declared for their own help; the other shared fields are ForwardRLConfig's)
    num_steps: int = option(10, "ODE (Euler) steps of a rollout; its sigmas are the noise levels NFT trains at (10 "
                            "in the code's single-reward configs, 25 for multi-reward)", min=1, max=1000,
                            group="rollouts")
    guidance: float = option(1.0, "CFG scale of the rollouts and of the trained velocity; 1.0 = CFG-free, as "
                             "DiffusionNFT is designed; > 1 trains the guided velocity, as Flow-GRPO's code does",
                             min=0, group="rollouts")
    # NFT
    rewards: dict = option({"prefer": 1.0}, "reward name -> weight; several rewards at once is NFT-Mix", group="NFT")
    prompt_tasks: dict = option({"prefer": 1.0}, "task -> sampling weight of its train prompts", group="NFT")
    beta: float = option(1.0, "mixing weight beta: v+ = beta v + (1 - beta) v_old, v- = (1 + beta) v_old - beta v "
                         "(1.0 in the code's configs, 0.1 for OCR and multi-reward)", min=0, min_open=True, group="NFT")
    adv_clip: float = option(5.0, "optimality r = 1/2 + 1/2 clip(A / adv_clip, -1, 1) of a group advantage A (the "
                             "paper's Z_c; the code's adv_clip_max 5, which also scales the loss by "
                             "adv_clip / beta)", min=0, min_open=True, group="NFT")
    global_std: bool = option(True, "normalise advantages by the std of all rewards (the code), else per group",
                              group="NFT")
    adaptive_weight: bool = option(True, "weight each sample's squared x0 error by 1 / its stop-gradient mean "
                                   "absolute error (the paper's adaptive weighting, the code); false = the plain "
                                   "velocity MSE of the paper's loss equation", group="NFT")
    timesteps_per_sample: int = option(4, "noise levels each clean sample trains at, drawn without replacement from "
                                       "the rollout's sigmas, with fresh noise each (the code trains 9 of 10)",
                                       min=1, group="NFT")
    ref_weight: float = option(1e-4, "weight of the pull towards the base, mean (v - v_base)^2 (the code's 1e-4); "
                               "0 turns it off", min=0, group="NFT")
    old_decay_rate: float = option(0.001, "the old adapter's soft update after each epoch: old <- d old + (1 - d) "
                                   "theta, d = min(old_decay_rate (step - old_decay_flat), old_decay_max); "
                                   "0 = the old adapter copies the policy (fully on-policy)", min=0, group="NFT")
    old_decay_max: float = option(0.5, "the soft update's largest decay d (the code: 0.5; OCR 0.999)",
                                  min=0, max=1, max_open=True, group="NFT")
    old_decay_flat: int = option(0, "optimizer steps before the decay starts to grow (d = 0 until then; OCR: 75)",
                                 min=0, group="NFT")
    adapter_name: str = option("teacher", "name of the trained LoRA adapter (the old one is <name>_old)", group="NFT")
    @classmethod
    def sd35_medium(cls, **overrides: Any) -> NFTConfig:
        """DiffusionNFT's SD3.5-M settings (``config/nft.py``): lr 3e-4, group 24, beta 1, 10 CFG-free ODE
        steps with 9 trained noise levels per sample, LoRA r 32 / alpha 64."""
        base = dict(model=SD35_MEDIUM, num_steps=10, eval_steps=40, guidance=1.0, lora_rank=32, lora_alpha=64.0,
                    mixed_precision="fp16",
                    decode_chunk=SD35_DECODE_CHUNK, checkpoint_every=60, epochs=1000, batch_size=48, group_size=24,
                    train_batch_size=8, lr=3e-4, timesteps_per_sample=9)
        return cls(**{**base, **sd35_reward_overrides(cls, overrides), **overrides})
