"""Rollouts and scoring shared by GRPO and OPD: prompt groups, SDE trajectories with log-probs, rewards.

A process's rollout is ``batch_size`` samples in whole groups of ``group_size`` (one prompt each, contiguous),
so after ``accelerator.gather`` sample ``i`` of the gathered batch belongs to group ``i // group_size``.
All randomness of an epoch comes from ``(seed, epoch, process)`` (:func:`epoch_seed`), so a resumed run
draws exactly the prompts and noise it would have drawn without the interruption.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import torch
from accelerate import Accelerator

from .. import metric_names as names
from ..adapters import use_adapter
from ..models.base import FlowModel, PromptEmbeds
from ..reward_names import reward_task
from ..rewards import get_reward
from ..sampling import sample, sigma_max_of
from ..world.prompts import PROMPT_SETS
from ..world.splits import load_prompts, prompt_source
from .dist import gather


@dataclass
class Rollout:
    """A batch of B on-policy SDE trajectories and what produced them."""

    records: list[dict]  # B prompt records; each has "prompt" and "task"
    seeds: list[int]  # B initial-noise seeds
    cond: PromptEmbeds  # B prompt embeddings (no gradient)
    uncond: PromptEmbeds | None  # B embeddings of "" for CFG; None when guidance == 1
    latents: torch.Tensor  # [B, N + 1, C, H, W]: noise first, final sample last
    log_probs: torch.Tensor  # [B, N]: log-prob of every transition under the sampling policy
    sigmas: torch.Tensor  # [N + 1] the schedule, ending at 0

    def __len__(self) -> int:
        return len(self.records)

    @property
    def sigma_max(self) -> float | None:  # what sde_step needs at sigma == 1
        return sigma_max_of(self.sigmas)

    def embeds(self, index: Sequence[int]) -> tuple[PromptEmbeds, PromptEmbeds | None]:
        """(cond, uncond) of the rows ``index``."""
        idx = list(index)
        return self.cond.subset(idx), None if self.uncond is None else self.uncond.subset(idx)


def epoch_seed(seed: int, epoch: int, process: int, salt: str = "") -> int:
    """A stable 31-bit seed for one epoch of one process (``hash()`` is salted per interpreter, crc32 is not)."""
    return zlib.crc32(f"{seed}:{epoch}:{process}:{salt}".encode()) & 0x7FFFFFFF


def lora_init_seed(seed: int) -> int:
    """The seed a run's new LoRA draws its random A from (``add_lora(seed=)``), so a run is reproducible in any
    process."""
    return epoch_seed(seed, 0, 0, "lora-init")


def train_prompts(task: str) -> tuple[dict, ...]:
    """The train split of ``task`` (the user's prompt set in use for it, else the world's), read once per source."""
    return _train_prompts(task, prompt_source(task))


@cache
def _train_prompts(task: str, source: str | None) -> tuple[dict, ...]:
    return tuple(dict(r, task=r.get("task", task)) for r in load_prompts(task, "train"))


def sample_groups(task_weights: Mapping[str, float], n_groups: int, group_size: int,
                  rng: random.Random) -> list[dict]:
    """``n_groups`` train prompts, task drawn by weight, each repeated ``group_size`` times in a row.

    Example:
        >>> recs = sample_groups({"text": 1.0}, 2, 3, random.Random(0))
        >>> len(recs), recs[0] == recs[2], {r["task"] for r in recs}
        (6, True, {'text'})
    """
    tasks = [t for t, w in task_weights.items() if w > 0]
    if not tasks:
        raise ValueError(f"no task has a positive weight in {dict(task_weights)}: give one a weight > 0")
    weights = [float(task_weights[t]) for t in tasks]
    records: list[dict] = []
    for _ in range(n_groups):
        record = rng.choice(train_prompts(rng.choices(tasks, weights)[0]))
        records.extend(dict(record) for _ in range(group_size))
    return records


@torch.no_grad()
def rollout(model: FlowModel, adapter: str | None, records: list[dict], seeds: list[int], *, num_steps: int,
            guidance: float, noise_level: float, generator: torch.Generator, chunk: int,
            sde_steps: Collection[int] | None = None, antithetic: bool = False) -> Rollout:
    """SDE trajectories of adapter ``adapter`` (None: the base) for ``records``, ``chunk`` samples at a time.

    ``sde_steps``: the steps that draw SDE noise, the others are ODE steps (the configs' ``clean_untrained_steps``
    and ``sde_window``); None: every step.
    ``antithetic``: samples 2k and 2k + 1 get opposite SDE noise (the configs' ``antithetic_noise``); ``chunk``
    must then be even so that no pair is split.

    Raises:
        FloatingPointError: the policy produced NaN or inf latents (its weights have diverged).
    """
    prompts = [r["prompt"] for r in records]
    cond = model.encode_prompts(prompts)
    cond = PromptEmbeds(cond.seq.detach(), cond.pooled.detach())
    uncond = model.uncond_embeds(len(records)) if guidance != 1.0 else None
    if uncond is not None:
        uncond = PromptEmbeds(uncond.seq.detach(), uncond.pooled.detach())
    latents, log_probs, sigmas = [], [], None
    with use_adapter(model, adapter):
        for start in range(0, len(records), chunk):
            idx = list(range(start, min(start + chunk, len(records))))
            traj = sample(model, cond.subset(idx), seeds=seeds[idx[0]:idx[-1] + 1], num_steps=num_steps,
                          guidance=guidance, noise_level=noise_level, generator=generator,
                          uncond=None if uncond is None else uncond.subset(idx), sde_steps=sde_steps,
                          antithetic=antithetic)
            latents.append(traj.latents)
            log_probs.append(traj.log_probs)
            sigmas = traj.sigmas
    out = Rollout(records, list(seeds), cond, uncond, torch.cat(latents), torch.cat(log_probs), sigmas)
    if not (torch.isfinite(out.latents).all() and torch.isfinite(out.log_probs).all()):
        raise FloatingPointError(f"the rollout of adapter {adapter!r} produced NaN/inf latents: its weights have "
                                 "diverged; lower the learning rate and resume from the last good checkpoint")
    return out


def reward_applies(name: str, record: Mapping, prompt_tasks: Sequence[str]) -> bool:
    """A reward named after a trained task scores that task's prompts only (and mixed prompts labelled with
    that task, ``record["tasks"]``); any other reward scores all.

    So GRPO-Mix on ``{"compose": 1, "text": 1}`` gives a text prompt the text reward alone, while an extra
    ``"quality"`` reward (not a prompt task there) adds to every sample, as the released code's DeQA term.
    A real-image reward counts as the task it stands for (:func:`flowopd.reward_names.reward_task`: ``ocr`` as
    text, ``geneval`` as compose, ``pickscore`` as prefer, ``deqa`` as quality); ``remote:URL`` scores all.
    """
    name = reward_task(name) or ""  # "" is no task: a reward of every prompt
    return name not in prompt_tasks or record.get("task") == name or name in (record.get("tasks") or {})


@dataclass
class Scores:
    total: torch.Tensor  # [B] the weighted reward each sample trains on
    raw: dict[str, torch.Tensor]  # reward name -> [B] unweighted score, NaN where the reward does not apply


def decode_in_chunks(model: FlowModel, latents: torch.Tensor, chunk: int = 0) -> torch.Tensor:
    """Images [B, 3, H, W] on the CPU in float32, decoded ``chunk`` latents at a time (0: all at once): a VAE
    decode's memory grows with its batch (about 0.5 GiB per 512 px image for SD3.5, docs/sd35.md)."""
    step = chunk or len(latents)
    with torch.no_grad():
        return torch.cat([model.decode(latents[i:i + step]).float().cpu() for i in range(0, len(latents), step)])


def score_rollout(model: FlowModel, roll: Rollout, weights: Mapping[str, float],
                  prompt_tasks: Sequence[str], scored_tasks: Mapping[str, str] | None = None,
                  decode_chunk: int = 0) -> Scores:
    """Decode the final samples (``decode_chunk`` at a time, 0: all at once) and score each with the rewards that
    apply to it (:func:`reward_applies`), or, for a reward in ``scored_tasks`` (reward -> task), with the rewards
    of its task (``record["task"]``, or a mixed prompt's ``record["tasks"]``)."""
    images = decode_in_chunks(model, roll.latents[:, -1], decode_chunk)
    n = len(roll)
    total = torch.zeros(n, dtype=torch.float32)
    raw = {}
    for name, weight in weights.items():
        if scored_tasks is not None and name in scored_tasks:
            task = scored_tasks[name]
            idx = [i for i, r in enumerate(roll.records) if r.get("task") == task or task in (r.get("tasks") or {})]
        else:
            idx = [i for i, r in enumerate(roll.records) if reward_applies(name, r, prompt_tasks)]
        values = torch.full((n,), math.nan)
        if idx:
            got = get_reward(name)(images[idx], [roll.records[i]["prompt"] for i in idx],
                                   [roll.records[i] for i in idx])
            values[idx] = torch.as_tensor(got, dtype=torch.float32)
            total[idx] += float(weight) * values[idx]
        raw[name] = values
    return Scores(total, raw)


@dataclass
class GatheredScores:
    """Scores of the samples of all processes, ordered by process (``P * B`` rows)."""

    total: torch.Tensor  # [P * B]
    raw: dict[str, torch.Tensor]  # name -> [P * B], NaN where not applicable
    tasks: list[str]  # P * B task names


def gather_scores(accelerator: Accelerator, roll: Rollout, scores: Scores) -> GatheredScores:
    """:class:`Scores` of every process, on every process."""
    task_ids = torch.tensor([PROMPT_SETS.index(r["task"]) if r.get("task") in PROMPT_SETS else -1
                             for r in roll.records])
    tasks = [PROMPT_SETS[i] if i >= 0 else "other" for i in gather(accelerator, task_ids).tolist()]
    raw = {name: gather(accelerator, v) for name, v in scores.raw.items()}
    return GatheredScores(gather(accelerator, scores.total), raw, tasks)


def reward_metrics(g: GatheredScores) -> dict[str, float]:
    """``reward/<name>``: mean of each reward where it applies; ``reward/<name>/<task>`` where it scores
    several tasks; ``reward/total``: mean weighted reward."""
    out = {names.REWARD_TOTAL: float(g.total.mean())}
    for name, values in g.raw.items():
        ok = ~torch.isnan(values)
        if ok.any():
            out[f"reward/{name}"] = float(values[ok].mean())
        tasks = sorted({t for t, o in zip(g.tasks, ok.tolist()) if o})
        if len(tasks) > 1:
            for task in tasks:
                sel = torch.tensor([t == task for t in g.tasks]) & ok
                out[f"reward/{name}/{task}"] = float(values[sel].mean())
    return out
