"""A DiffusionNFT teacher (arXiv 2509.16117; docs/method.md, "DiffusionNFT") on one reward, or NFT-Mix on several.

Per epoch: deterministic ODE rollouts of the frozen *old* adapter (the sampling policy, a soft-updated copy
of the trained one; CFG-free by default), rewards (:func:`flowopd.training.rollout.score_rollout`),
per-prompt group advantages over all processes and the optimality weight ``r = 1/2 + 1/2 clip(A / Z, -1, 1)``
(:func:`flowopd.methods.nft.loss.optimality`). Training uses the clean samples alone: each is noised again at
``timesteps_per_sample`` of the rollout's sigmas with fresh noise, and :func:`~flowopd.methods.nft.loss.nft_loss`
pulls the implicit positive policy towards the flow-matching target with weight r and the implicit negative policy with
weight 1 - r, plus a small pull towards the base. After the epoch's optimizer steps the old adapter moves
towards the trained one (:func:`flowopd.methods.nft.loss.old_decay`).

The loop (optimizer, accumulation, EMA, checkpoints, callbacks, divergence checks) is
:class:`flowopd.training.loop.RLTrainer`'s; a trained *step* ``j`` of a micro-batch here is its rows' j-th
noise level. The old adapter (``<adapter_name>_old``) is saved in the checkpoint (``old/``), so a resume is
exact. Metrics beyond the loop's: ``reward/<name>``, ``reward_std``, ``advantage_abs``, ``nft/positive``,
``nft/negative``, ``nft/optimality``, ``nft/ref_mse``, ``nft/old_decay``.

Example::

    from flowopd.models import load_model
    from flowopd.methods.nft.config import NFTConfig
    from flowopd.methods.nft.trainer import train_nft

    result = train_nft(load_model(), NFTConfig(rewards={"prefer": 1.0}, prompt_tasks={"prefer": 1.0}), "runs/nft")
    print(result.adapter_dir)  # runs/nft/adapter
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from accelerate import Accelerator

from ... import metric_names as names
from ...adapters import adapter_parameters, add_lora, drop_adapter, replace_adapter, save_adapter, use_adapter
from ...layout import OLD_ADAPTER_DIR
from ...models.base import FlowModel
from ...rewards import get_reward
from ...training.checkpoint import find_checkpoint
from ...training.dist import MetricSums
from ...training.image_sets import ImageSetLosses
from ...training.loop import Callback, RLTrainer, TrainResult
from ...training.rollout import (
    Rollout,
    epoch_seed,
    gather_scores,
    lora_init_seed,
    reward_metrics,
    rollout,
    sample_groups,
    score_rollout,
)
from ..grpo.trainer import Advantages, gather_advantages
from .config import NFTConfig
from .loss import nft_loss, old_decay, optimality

log = logging.getLogger(__name__)


class NFTTrainer(RLTrainer):
    """DiffusionNFT on the adapter ``cfg.adapter_name`` with its frozen old copy; see the module docstring."""

    stage = "nft"
    config_class: type = NFTConfig  # a subclass trainer (AWM) names its own

    def __init__(self, model: FlowModel, cfg: NFTConfig, out_dir: str | Path, *,
                 accelerator: Accelerator | None = None, resume: bool = True):
        if not isinstance(cfg, self.config_class):
            raise TypeError(f"train_{self.stage} needs an {self.config_class.__name__}, got {type(cfg).__name__}")
        for name in cfg.rewards:
            get_reward(name)  # an unknown reward fails now, not after the first rollout
        super().__init__(model, cfg, out_dir, accelerator)
        self.old = f"{self.name}_old"
        self.init_student(None, resume)
        self.init_old(resume)
        self.image_sets = ImageSetLosses(model, cfg.sft_data, self.name, cfg.seed) if cfg.sft_data else None

    def init_old(self, resume: bool) -> None:
        """The old adapter: the checkpoint's on resume, else a copy of the student's initial weights."""
        model, ckpt = self.model, find_checkpoint(self.out) if resume else None
        if ckpt is not None and (ckpt / OLD_ADAPTER_DIR).is_dir():
            replace_adapter(model, ckpt / OLD_ADAPTER_DIR, self.old)
            copy = False
        else:
            drop_adapter(model, self.old)
            add_lora(model, self.old, self.cfg.lora_rank, self.cfg.lora_alpha, seed=lora_init_seed(self.cfg.seed))
            copy = True
        theta, old = adapter_parameters(model, self.name), adapter_parameters(model, self.old)
        pairs = [(old[n.replace(f".{self.name}.", f".{self.old}.")], p) for n, p in theta.items()]
        self.old_params = [o for o, _ in pairs]
        with torch.no_grad():
            for o, p in pairs:
                o.data = o.data.to(device=p.device, dtype=torch.float32)
                if copy:
                    o.copy_(p)

    @torch.no_grad()
    def update_old(self) -> float:
        """``old <- d old + (1 - d) theta`` with the decay of the steps done; returns d."""
        cfg = self.cfg
        d = old_decay(self.step, rate=cfg.old_decay_rate, maximum=cfg.old_decay_max, flat=cfg.old_decay_flat)
        torch._foreach_lerp_(self.old_params, [p.detach() for p in self.params], 1.0 - d)
        return d

    def save_adapters(self, folder: Path) -> None:
        super().save_adapters(folder)
        save_adapter(self.model, self.old, folder / OLD_ADAPTER_DIR)

    def joint(self, micro_loss: Callable[[list[int], int], tuple[torch.Tensor, dict]],
              epoch: int) -> Callable[[list[int], int], tuple[torch.Tensor, dict]]:
        """``micro_loss`` with the image sets' flow-matching losses beside it (``sft_data``; see
        :mod:`flowopd.training.image_sets`), or ``micro_loss`` itself without image sets."""
        if self.image_sets is None:
            return micro_loss

        def with_sets(rows: list[int], j: int) -> tuple[torch.Tensor, dict]:
            loss, values = micro_loss(rows, j)
            # keyed on the epoch's loss count, which a resumed epoch advances past the steps it skips
            total, extra = self.image_sets.joint(loss, len(self.cfg.prompt_tasks), len(rows), epoch,
                                                 self.acc.process_index, self.micro_calls)
            return total, {**values, **extra}

        return with_sets

    # --- rollout, scoring, loss -----------------------------------------------------------------------------

    def sample_tasks(self) -> list[str]:
        return list(self.cfg.prompt_tasks)

    def make_rollout(self, epoch: int, task_weights: Mapping[str, float]) -> Rollout:
        """This process's ODE rollout of ``epoch`` from the old adapter (prompts and seeds from the epoch seed)."""
        cfg, rank = self.cfg, self.acc.process_index
        rng = random.Random(epoch_seed(cfg.seed, epoch, rank, "prompts"))
        records = sample_groups(task_weights, cfg.batch_size // cfg.group_size, cfg.group_size, rng)
        seeds = [rng.randrange(2**31) for _ in records]
        self.note(f"epoch {epoch + 1}/{cfg.epochs}: sampling {len(records)} images")
        return rollout(self.model, self.sampler(), records, seeds, num_steps=cfg.num_steps, guidance=cfg.guidance,
                       noise_level=0.0, generator=torch.Generator(), chunk=cfg.train_batch_size)

    def scored_rollout(self, epoch: int) -> tuple[Rollout, dict, Advantages]:
        """This epoch's rollout, its rewards gathered over processes (for the metrics) and its group-normalised
        advantages."""
        cfg = self.cfg
        roll = self.make_rollout(epoch, cfg.prompt_tasks)
        scores = score_rollout(self.model, roll, cfg.rewards, list(cfg.prompt_tasks), decode_chunk=cfg.decode_chunk)
        gathered = gather_scores(self.acc, roll, scores)
        return roll, gathered, gather_advantages(self.acc, scores.total, cfg.group_size, global_std=cfg.global_std)

    @staticmethod
    def reward_summary(gathered: dict, adv: Advantages) -> dict[str, float]:
        """The epoch's reward metrics, with the spread of the rewards and the mean |advantage|."""
        return {**reward_metrics(gathered), "reward_std": float(adv.rewards.std(correction=0)),
                "advantage_abs": float(adv.advantages.abs().mean())}

    def sampler(self) -> str:
        """The adapter the rollouts sample from: NFT's frozen old adapter."""
        return self.old

    def microbatch_steps(self, rng: random.Random) -> list[int]:
        """A micro-batch trains at ``timesteps_per_sample`` noise levels: slot j is each row's j-th one."""
        return list(range(self.cfg.timesteps_per_sample))

    def noise_levels(self, epoch: int, n: int) -> list[list[int]]:
        """Row i's rollout-sigma indices (``timesteps_per_sample`` distinct ones) for ``epoch``."""
        cfg, rank = self.cfg, self.acc.process_index
        return [random.Random(epoch_seed(cfg.seed, epoch, rank, f"t:{i}")).sample(range(cfg.num_steps),
                                                                                   cfg.timesteps_per_sample)
                for i in range(n)]

    def noised(self, roll: Rollout, levels: list[list[int]], rows: list[int],
               j: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x0, eps, t, x_t)`` of rows ``rows`` at their j-th noise level: the clean samples [B, C, H, W], the
        fresh noise (seeded by epoch, process, row and j, so a resume and a recomputation draw the same), the
        levels [B] and ``x_t = (1 - t) x0 + t eps``."""
        cfg, rank = self.cfg, self.acc.process_index
        x0 = roll.latents[rows, -1]
        t = roll.sigmas[[levels[i][j] for i in rows]].to(x0.device)
        eps = torch.stack([torch.randn(x0.shape[1:], generator=torch.Generator().manual_seed(
            epoch_seed(cfg.seed, self.epoch, rank, f"eps:{i}:{j}"))) for i in rows]).to(x0.device)
        tt = t.view(-1, *([1] * (x0.ndim - 1)))
        return x0, eps, t, (1 - tt) * x0 + tt * eps

    def step_loss(self, roll: Rollout, r: torch.Tensor, levels: list[list[int]], rows: list[int],
                  j: int) -> tuple[torch.Tensor, dict]:
        """NFT loss of rows ``rows`` at their j-th noise level, and its metrics."""
        cfg, model = self.cfg, self.model
        x0, eps, t, x_t = self.noised(roll, levels, rows, j)
        cond, uncond = roll.embeds(rows)
        with torch.no_grad():
            with use_adapter(model, self.old):
                v_old = model.velocity(x_t, t, cond, uncond, cfg.guidance)
            v_ref = None
            if cfg.ref_weight > 0:
                with use_adapter(model, None):
                    v_ref = model.velocity(x_t, t, cond, uncond, cfg.guidance)
        with use_adapter(model, self.name):
            v = model.velocity(x_t, t, cond, uncond, cfg.guidance)
        out = nft_loss(v, v_old, v_ref, x0, x_t, t, r[rows], cfg.beta, adaptive=cfg.adaptive_weight,
                       scale=cfg.adv_clip / cfg.beta, ref_weight=cfg.ref_weight)
        values = {names.NFT_POSITIVE: out.positive, names.NFT_NEGATIVE: out.negative}
        if v_ref is not None:
            values[names.REF_MSE] = out.kl_ref
        return out.loss, values

    def train_epoch(self, epoch: int) -> dict[str, float]:
        roll, gathered, adv = self.scored_rollout(epoch)
        r = optimality(adv.local, self.cfg.adv_clip)
        levels = self.noise_levels(epoch, len(roll))
        metrics = MetricSums()
        metrics.add(names.OPTIMALITY, r)
        self.accumulate(list(range(len(roll))),
                        self.joint(lambda rows, j: self.step_loss(roll, r, levels, rows, j), epoch), metrics)
        decay = self.update_old()
        return {**metrics.means(self.acc), **self.reward_summary(gathered, adv), names.OLD_DECAY: decay}


def train_nft(model: FlowModel, cfg: NFTConfig, out_dir: str | Path, *, callback: Callback | None = None,
              should_stop: Callable[[], bool] | None = None, resume: bool = True,
              accelerator: Accelerator | None = None) -> TrainResult:
    """Train a DiffusionNFT teacher (or NFT-Mix) adapter; arguments as :func:`flowopd.methods.grpo.trainer.train_grpo`.

    ``OUT/checkpoint`` holds the trained adapter, its old copy (``old/``) and the optimizer; ``OUT/adapter``
    the exported weights (the live ones unless ``ema`` is on).
    """
    return NFTTrainer(model, cfg, out_dir, accelerator=accelerator, resume=resume).run(callback, should_stop)
