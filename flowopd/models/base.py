"""The model interface every backend shares, shaped after diffusers' ``StableDiffusion3Pipeline``.

A backend turns prompts into SD3-style embeddings (a token sequence for joint attention and a pooled
vector), predicts flow-matching velocities with classifier-free guidance, and maps between images and
the latents the flow runs on. The algorithms (sampling, GRPO, distillation) only see this interface,
so the tiny model and SD3.5 share every line of them.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch
from PIL import Image

from .presets import LORA_TARGET_MODULES


@dataclass
class PromptEmbeds:
    """A batch of B prompt embeddings in SD3's form: a token sequence for joint attention and a pooled vector."""

    seq: torch.Tensor  # [B, L, joint_attention_dim]
    pooled: torch.Tensor  # [B, pooled_projection_dim]

    def __len__(self) -> int:
        return self.seq.shape[0]

    def cat(self, other: PromptEmbeds) -> PromptEmbeds:
        return PromptEmbeds(torch.cat([self.seq, other.seq]), torch.cat([self.pooled, other.pooled]))

    def subset(self, index: list[int]) -> PromptEmbeds:
        """The rows ``index`` of the batch (in that order, repeats allowed)."""
        return PromptEmbeds(self.seq[index], self.pooled[index])

    def repeat(self, n: int) -> PromptEmbeds:
        """Expand a batch of one to ``n`` rows (e.g. the empty prompt for CFG)."""
        return PromptEmbeds(self.seq.expand(n, -1, -1), self.pooled.expand(n, -1))


class FlowModel(ABC):
    """A text-to-image flow-matching model: sigma = t in [0, 1], t = 1 is noise, v = eps - x_data.

    Everything the samplers, trainers, adapters and evaluation use of a model is declared here. A backend
    sets the attributes in its ``__init__`` and implements the abstract methods; the rest is shared.

    Attributes:
        transformer: the SD3-style ``SD3Transformer2DModel`` that predicts velocities; LoRA adapters live on it.
        latent_shape: (C, H, W) of one latent.
        image_size: side of the generated images in pixels.
        shift: the ``FlowMatchEulerDiscreteScheduler`` shift of this model's sigma schedule.
        lora_target_modules: the transformer modules a new LoRA adapts (the paper's attention projections).
    """

    transformer: torch.nn.Module
    latent_shape: tuple[int, int, int]
    image_size: int
    shift: float
    lora_target_modules: tuple[str, ...] = LORA_TARGET_MODULES
    # Whether training recomputes the transformer's block activations in the backward pass by default: on for
    # SD3 (activations dominate its training memory), off for the tiny model (they are small; it costs time).
    default_gradient_checkpointing: bool = False
    # Whether a trainer encodes its prompts once and moves the text encoders off the accelerator by default
    # (flowopd.models.prompt_cache): on for SD3 (10 GiB of encoders), off for the tiny model (nothing to free).
    default_cache_prompts: bool = False
    # Task -> the reward that scores it where a config names none (evaluation): {} = the tiny world's reward
    # of each task's name; SD3 backends score real images with the paper's (OCR, PickScore, GenEval, DeQA).
    default_task_rewards: Mapping[str, str] = MappingProxyType({})
    _pinned_model_id: str | None = None

    def set_gradient_checkpointing(self, enabled: bool | None) -> bool:
        """Turn activation checkpointing of the transformer's blocks on or off (None: the model's default);
        the loss and the gradients are the same either way, the peak memory lower and a step slower when on.
        Returns whether it is on."""
        on = self.default_gradient_checkpointing if enabled is None else bool(enabled)
        if on:
            self.transformer.enable_gradient_checkpointing()
        elif getattr(self.transformer, "gradient_checkpointing", False):
            self.transformer.disable_gradient_checkpointing()
        return on

    @abstractmethod
    def modules(self) -> dict[str, torch.nn.Module]:
        """Every ``nn.Module`` of the model by name (``transformer``, text encoders, VAE), for placement,
        freezing and dtype casts."""

    @abstractmethod
    def to(self, device: torch.device | str) -> FlowModel:
        """Move every module to ``device``; returns the model itself."""

    @abstractmethod
    def encode_prompts(self, prompts: list[str]) -> PromptEmbeds:
        """Prompts -> embeddings: seq [B, L, joint_attention_dim], pooled [B, pooled_projection_dim]."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, h, w] -> images [B, 3, H, W] in [0, 1]."""

    @abstractmethod
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> latents [B, C, h, w] (for flow-matching fine-tunes)."""

    @property
    def device(self) -> torch.device:
        """The transformer's device (where latents and embeddings go)."""
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The transformer's dtype (inputs are cast to it, outputs come back as float32)."""
        return next(self.transformer.parameters()).dtype

    @property
    def model_id(self) -> str:
        """The id of the base weights that adapters record (``adapter.json``) and are checked against.

        The pinned id (:meth:`pin_model_id`) if any, else :meth:`fingerprint`.
        """
        return self._pinned_model_id or self.fingerprint()

    def pin_model_id(self) -> str:
        """Fix :attr:`model_id` to the current weights' fingerprint and return it, e.g. before a cast to
        half precision (a bf16 copy fingerprints differently, but its adapters must load onto the fp32 base)."""
        self._pinned_model_id = self.model_id
        return self._pinned_model_id

    def fingerprint(self) -> str:
        """``<backend class>:<hash>`` of the transformer's config and the first values of every base weight.

        Weights are cast to fp16 (so an fp16 copy of the same weights matches) and LoRA weights are skipped,
        so the fingerprint does not change when adapters are added or trained.
        """
        h = hashlib.sha256()
        config = getattr(self.transformer, "config", {})
        h.update(json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}, sort_keys=True,
                            default=str).encode())
        for n, p in sorted(self.transformer.named_parameters()):
            if any(part.startswith("lora_") for part in n.split(".")[:-1]):  # a LoRA parameter of some adapter
                continue
            h.update(n.replace(".base_layer", "").encode())
            h.update(p.detach().reshape(-1)[:64].to("cpu", torch.float16).numpy().tobytes())
        return f"{type(self).__name__}:{h.hexdigest()[:16]}"

    def raw_velocity(self, x: torch.Tensor, sigma: torch.Tensor, embeds: PromptEmbeds) -> torch.Tensor:
        """The transformer's velocity [B, C, h, w] (float32) for latents ``x`` [B, C, h, w] at noise level
        ``sigma`` [B], without guidance."""
        out = self.transformer(hidden_states=x.to(self.dtype), timestep=sigma.to(self.dtype) * 1000,
                               encoder_hidden_states=embeds.seq.to(self.dtype),
                               pooled_projections=embeds.pooled.to(self.dtype), return_dict=False)[0]
        return out.float()

    def velocity(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: PromptEmbeds,
                 uncond: PromptEmbeds | None = None, guidance: float = 1.0) -> torch.Tensor:
        """Guided velocity [B, C, h, w] ``v_u + w (v_c - v_u)``; one batched forward of 2B rows when guided.

        Args:
            x: latents [B, C, h, w]. sigma: float or [B]. cond, uncond: B prompt embeddings (uncond None or
                ``guidance == 1``: no guidance).
        """
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
