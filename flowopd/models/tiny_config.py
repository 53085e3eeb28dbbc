"""The built-in tiny model's architecture config (``kind="tiny"``), kept apart from :mod:`flowopd.models.tiny`
(which re-exports it) so that reading and checking it imports no torch or diffusers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.base import ConfigBase, option

__all__ = ["TinyConfig"]


@dataclass
class TinyConfig(ConfigBase, kind="tiny"):
    """The tiny model's architecture: diffusers' SD3 transformer in pixel space plus a small text encoder."""

    image_size: int = option(32, "image side in pixels (the latents are the pixels)", min=16, max=256,
                             group="transformer")
    patch_size: int = option(4, "transformer patch side in pixels; must divide image_size", min=1,
                             group="transformer")
    num_layers: int = option(6, "joint transformer blocks", min=1, group="transformer")
    num_heads: int = option(4, "attention heads per block", min=1, group="transformer")
    head_dim: int = option(32, "width of one attention head (the transformer width is num_heads x head_dim)",
                           min=1, group="transformer")
    text_width: int = option(64, "width of the text encoder's tokens", min=1, group="text encoder")
    text_layers: int = option(2, "text encoder layers", min=1, group="text encoder")
    pooled_dim: int = option(64, "width of the pooled prompt vector fed to the timestep embedding", min=1,
                             group="text encoder")
    max_length: int = option(24, "prompt tokens kept (longer prompts are cut)", min=1, group="text encoder")
    # 3.0 suits SD3.5's 512 px latents, 1.0 a 32 px image.
    shift: float = option(1.0, "sigma shift of the noise schedule (SD3.5 uses 3.0 on 512 px latents)", min=0,
                          min_open=True, group="schedule")

    def check(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
