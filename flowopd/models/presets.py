"""The named base models of each backend, and the LoRA targets they share; importable without torch.

``PRESETS[backend][name]`` is what :func:`flowopd.models.load_model` takes for that model: a folder for the
built-in tiny model, a Hub id for Stable Diffusion 3.5.
"""

from __future__ import annotations

from pathlib import Path

SD35_MEDIUM = "stabilityai/stable-diffusion-3.5-medium"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny-base"  # the built-in tiny model

PRESETS: dict[str, dict[str, str]] = {
    "tiny": {"tiny-base": str(DEFAULT_MODEL_DIR)},
    "sd3": {"sd3.5-medium": SD35_MEDIUM},
}

# The attention projections the paper's LoRA adapts (same module names in the tiny model and SD3.5).
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
