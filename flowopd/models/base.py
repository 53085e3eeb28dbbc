"""The model interface every backend shares, shaped after diffusers' ``StableDiffusion3Pipeline``.

A backend turns prompts into SD3-style embeddings (a token sequence for joint attention and a pooled
vector), predicts flow-matching velocities with classifier-free guidance, and maps between images and
the latents the flow runs on. The algorithms (sampling, GRPO, distillation) only see this interface,
so the tiny model and SD3.5 share every line of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

# The attention projections the paper's LoRA adapts (same module names in the tiny model and SD3.5).
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


@dataclass
class PromptEmbeds:
    seq: torch.Tensor  # [B, L, joint_attention_dim]
    pooled: torch.Tensor  # [B, pooled_projection_dim]

    def __len__(self) -> int:
        return self.seq.shape[0]

    def cat(self, other: PromptEmbeds) -> PromptEmbeds:
        return PromptEmbeds(torch.cat([self.seq, other.seq]), torch.cat([self.pooled, other.pooled]))

    def repeat(self, n: int) -> PromptEmbeds:
        """Expand a batch of one to ``n`` rows (e.g. the empty prompt for CFG)."""
        return PromptEmbeds(self.seq.expand(n, -1, -1), self.pooled.expand(n, -1))


class FlowModel(ABC):
    """A text-to-image flow-matching model: sigma = t in [0, 1], t = 1 is noise, v = eps - x_data."""

    transformer: torch.nn.Module
    latent_shape: tuple[int, int, int]  # (C, H, W) of one latent
    image_size: int
    shift: float  # the FlowMatchEulerDiscreteScheduler shift of this model
    lora_target_modules: tuple[str, ...] = LORA_TARGET_MODULES

    @abstractmethod
    def encode_prompts(self, prompts: list[str]) -> PromptEmbeds: ...

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, h, w] -> images [B, 3, H, W] in [0, 1]."""

    @abstractmethod
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> latents (for flow-matching fine-tunes)."""

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    def raw_velocity(self, x: torch.Tensor, sigma: torch.Tensor, embeds: PromptEmbeds) -> torch.Tensor:
        """The transformer's velocity for latents ``x`` [B, C, h, w] at noise level ``sigma`` [B]."""
        out = self.transformer(hidden_states=x.to(self.dtype), timestep=sigma.to(self.dtype) * 1000,
                               encoder_hidden_states=embeds.seq.to(self.dtype),
                               pooled_projections=embeds.pooled.to(self.dtype), return_dict=False)[0]
        return out.float()

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: PromptEmbeds,
                 uncond: PromptEmbeds | None = None, guidance: float = 1.0) -> torch.Tensor:
        """Guided velocity ``v_u + w (v_c - v_u)``; one batched forward of 2B rows when guided."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(x.shape[0])
        if uncond is None or guidance == 1.0:
            return self.raw_velocity(x, sigma, cond)
        v_u, v_c = self.raw_velocity(torch.cat([x, x]), torch.cat([sigma, sigma]), uncond.cat(cond)).chunk(2)
        return v_u + guidance * (v_c - v_u)

    def uncond_embeds(self, n: int) -> PromptEmbeds:
        """Embeddings of the empty negative prompt ``""`` for a batch of ``n``."""
        return self.encode_prompts([""]).repeat(n)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Images [B, 3, H, W] in [0, 1] -> PIL images."""
    arr = (images.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return [Image.fromarray(a) for a in arr]


def from_pil(images: list[Image.Image]) -> torch.Tensor:
    """PIL images (same size) -> [B, 3, H, W] float in [0, 1]."""
    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) / 255 for im in images])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
