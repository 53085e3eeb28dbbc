"""Image sets trained beside a forward-process RL loss: the joint ``<source>-mix`` baseline (issue 18, item 8).

A joint run trains one adapter on the objectives of several teachers at once: reward tasks with the RL
algorithm's loss on their own prompts, image-set tasks (supervised teachers) with the plain flow-matching
loss on their own images and captions. :class:`ImageSetLosses` holds each set encoded once and gives the
flow-matching loss of a batch drawn from ``(seed, epoch, call, task)``, so a resumed epoch draws the same.

Weighting: every task counts alike. A micro-batch's loss is ``(n_rl L_rl + sum_k L_k) / (n_rl + n_sets)``,
with ``n_rl`` the reward tasks (the RL loss averages over their prompts) and ``L_k`` each set's loss on a batch
as large as the micro-batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..adapters import use_adapter
from ..datasets import ImageSet, load_image_set
from ..flow_matching import flow_matching_loss
from ..models.base import FlowModel, PromptEmbeds
from .rollout import epoch_seed


@torch.no_grad()
def encode_set(model: FlowModel, data: ImageSet, chunk: int = 64) -> tuple[torch.Tensor, PromptEmbeds]:
    """Latents [N, C, h, w] of an image set's images and the embeddings of its captions, in chunks."""
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255  # [N, 3, S, S] in [0, 1]
    x = torch.cat([model.encode_images(images[i:i + chunk].to(model.device)) for i in range(0, len(images), chunk)])
    parts = [model.encode_prompts(data.captions[i:i + chunk]) for i in range(0, len(images), chunk)]
    return x, PromptEmbeds(torch.cat([e.seq for e in parts]), torch.cat([e.pooled for e in parts]))


class ImageSetLosses:
    """The flow-matching losses of the image sets ``sets`` (task -> folder) for adapter ``adapter``."""

    def __init__(self, model: FlowModel, sets: Mapping[str, str | Path], adapter: str, seed: int):
        self.model, self.adapter, self.seed = model, adapter, seed
        self.latents: dict[str, torch.Tensor] = {}
        self.embeds: dict[str, PromptEmbeds] = {}
        for task, folder in sets.items():
            data = load_image_set(folder, model.image_size)  # a bad set fails here, naming the file and the fix
            self.latents[task], self.embeds[task] = encode_set(model, data)

    def __len__(self) -> int:
        return len(self.latents)

    def loss(self, task: str, batch: int, epoch: int, rank: int, call: int) -> torch.Tensor:
        """The flow-matching loss of ``batch`` images of ``task``'s set, drawn from (seed, epoch, rank, call)."""
        x = self.latents[task]
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, rank, f"set:{task}:{call}"))
        idx = torch.randint(len(x), (batch,), generator=gen).tolist()
        with use_adapter(self.model, self.adapter):
            return flow_matching_loss(self.model, x[idx], self.embeds[task].subset(idx), gen).loss

    def joint(self, rl_loss: torch.Tensor, n_rl: int, batch: int, epoch: int, rank: int,
              call: int) -> tuple[torch.Tensor, dict[str, float]]:
        """``(n_rl rl_loss + sum_k L_k) / (n_rl + n_sets)`` and each set's loss as ``sft/<task>``."""
        losses = {task: self.loss(task, batch, epoch, rank, call) for task in self.latents}
        total = (n_rl * rl_loss + sum(losses.values())) / (n_rl + len(losses))
        return total, {f"sft/{task}": float(v.detach()) for task, v in losses.items()}
