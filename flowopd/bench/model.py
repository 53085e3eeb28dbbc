"""The benchmark's model: an SD3.5-Medium-shaped transformer with random weights and random text embeddings.

Only the transformer is built: no text encoders, tokenizers or VAE, so nothing is downloaded and the
benchmark measures the transformer-side cost of training (rollouts, teacher and anchor forwards, the
student's forward/backward), which is where Flow-OPD's two memory layouts differ. Prompts map to random
embeddings of the real shapes, fixed per prompt text.
"""

from __future__ import annotations

import zlib
from typing import Any

import torch
from diffusers import SD3Transformer2DModel
from torch import nn

from ..models.base import FlowModel, PromptEmbeds

# stabilityai/stable-diffusion-3.5-medium, transformer/config.json. Source of the values: diffusers'
# scripts/convert_sd3_to_diffusers.py, which derives them from the released checkpoint ("(0, 1, ..., 12)
# for sd3.5" dual-attention layers, "sd3.5 use qk norm(rms_norm)", "sd3.5 2b use pos_embed_max_size=384",
# num_attention_heads = num_layers = 24, caption_projection_dim = 24 heads x 64 = 1536); the same values
# appear in public code that builds this transformer from its config without the gated repository.
SD35_MEDIUM_TRANSFORMER: dict[str, Any] = {
    "sample_size": 128, "patch_size": 2, "in_channels": 16, "num_layers": 24, "attention_head_dim": 64,
    "num_attention_heads": 24, "joint_attention_dim": 4096, "caption_projection_dim": 1536,
    "pooled_projection_dim": 2048, "out_channels": 16, "pos_embed_max_size": 384,
    "dual_attention_layers": tuple(range(13)), "qk_norm": "rms_norm",
}
# The same architecture in miniature (a dual-attention first block, RMS qk-norm), for CPU tests.
TINY_TRANSFORMER: dict[str, Any] = {
    "patch_size": 2, "in_channels": 16, "num_layers": 2, "attention_head_dim": 32, "num_attention_heads": 2,
    "joint_attention_dim": 64, "caption_projection_dim": 64, "pooled_projection_dim": 64, "out_channels": 16,
    "dual_attention_layers": (0,), "qk_norm": "rms_norm",
}


class Shape:
    """A named transformer shape: its config, prompt-embedding sizes and default resolution."""

    def __init__(self, name: str, config: dict[str, Any], text_tokens: int, resolution: int):
        self.name, self.config, self.text_tokens, self.resolution = name, config, text_tokens, resolution

    def transformer_config(self, resolution: int) -> dict[str, Any]:
        """The ``SD3Transformer2DModel`` config for images of ``resolution`` pixels (VAE factor 8).

        Raises:
            ValueError: the resolution is not a multiple of 16 or exceeds what the position table covers.
        """
        side = resolution // VAE_FACTOR
        cfg = dict(self.config)
        if self.name == "tiny":  # the smallest position table that fits; SD3.5's is fixed at 384 patches
            cfg.update(sample_size=side, pos_embed_max_size=max(1, side // cfg["patch_size"]))
        step = VAE_FACTOR * cfg["patch_size"]
        largest = cfg["pos_embed_max_size"] * step
        if resolution % step or not step <= resolution <= largest:
            raise ValueError(f"--resolution {resolution} does not suit shape {self.name}: use a multiple of {step} "
                             f"from {step} to {largest} pixels (512 or 1024 for sd35-medium)")
        return cfg


VAE_FACTOR = 8  # SD3.5's VAE: 8x downsampling to 16 latent channels
# SD3.5 prompts: 77 CLIP tokens + 128 T5 tokens (SD3FlowModel's and Flow-GRPO's max_sequence_length).
SHAPES = {
    "tiny": Shape("tiny", TINY_TRANSFORMER, text_tokens=32, resolution=64),
    "sd35-medium": Shape("sd35-medium", SD35_MEDIUM_TRANSFORMER, text_tokens=77 + 128, resolution=512),
}


def build_transformer(shape: str, resolution: int, *, seed: int = 0,
                      device: torch.device | str = "cpu") -> SD3Transformer2DModel:
    """A random ``SD3Transformer2DModel`` of ``shape`` (fp32), built on ``device``; deterministic in ``seed``
    on a given device type (so adapters saved for one build load onto another)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}: use one of {', '.join(SHAPES)}")
    cfg = SHAPES[shape].transformer_config(resolution)
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), device:
        torch.manual_seed(seed)
        transformer = SD3Transformer2DModel(**cfg)
    return transformer.eval()


class BenchFlowModel(FlowModel):
    """A :class:`FlowModel` over a bare transformer: random prompt embeddings of the real shapes, no VAE.

    Args:
        transformer: an ``SD3Transformer2DModel``.
        resolution: image side in pixels; latents are ``resolution // 8`` on a side.
        text_tokens: tokens per prompt embedding (SD3.5: 77 CLIP + T5 tokens).
    """

    def __init__(self, transformer: nn.Module, resolution: int, text_tokens: int):
        self.transformer = transformer
        cfg = transformer.config
        side = resolution // VAE_FACTOR
        self.latent_shape = (cfg.in_channels, side, side)
        self.image_size = resolution
        self.text_tokens = text_tokens
        self.shift = 3.0  # SD3.5's FlowMatchEulerDiscreteScheduler shift

    def modules(self) -> dict[str, nn.Module]:
        """Only the transformer."""
        return {"transformer": self.transformer}

    def to(self, device: torch.device | str) -> BenchFlowModel:
        """Move the transformer to ``device``."""
        self.transformer.to(device)
        return self

    def encode_prompts(self, prompts: list[str]) -> PromptEmbeds:
        """Random embeddings, fixed per prompt text: seq [B, text_tokens, joint_attention_dim], pooled
        [B, pooled_projection_dim] (float32, on the model's device)."""
        cfg = self.transformer.config
        seq, pooled = [], []
        for prompt in prompts:
            g = torch.Generator().manual_seed(zlib.crc32(prompt.encode()))
            seq.append(torch.randn(self.text_tokens, cfg.joint_attention_dim, generator=g))
            pooled.append(torch.randn(cfg.pooled_projection_dim, generator=g))
        return PromptEmbeds(torch.stack(seq).to(self.device), torch.stack(pooled).to(self.device))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Not available: the benchmark builds no VAE."""
        raise NotImplementedError("the benchmark model has no VAE: it cannot decode latents (use log_rewards=False)")

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Not available: the benchmark builds no VAE."""
        raise NotImplementedError("the benchmark model has no VAE: it cannot encode images")


def module_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers as they are stored now."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)
