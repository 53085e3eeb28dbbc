"""What the CLIP-based rewards (PickScore, aesthetic) share: weights from a local folder, or a clear message.

A folder holds a CLIP model and its processor as transformers writes them (``save_pretrained``): ``config.json``,
the weights, and the processor's files. Nothing is downloaded: a missing folder names the path expected and how
to fill it on a machine with internet.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from .images import as_uint8_list

BATCH = 16  # images per forward pass (CLIP-H at 224 px: well under a GPU's memory, bearable on a CPU)


class RewardWeightsMissing(FileNotFoundError):
    """A reward's weights are not where it looks; the message names the path and how to get them."""


def require_files(reward: str, folder: str | Path, files: tuple[str, ...], how: str) -> Path:
    """``folder`` (expanded) when it holds every file of ``files``, else RewardWeightsMissing saying what to do."""
    folder = Path(folder).expanduser()
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        where = f"{folder} has no {', '.join(missing)}" if folder.is_dir() else f"there is no folder {folder}"
        raise RewardWeightsMissing(f"the {reward} reward needs its weights in {folder}, but {where}. {how} "
                                   f"(or name another folder: \"{reward}:/path/to/folder\")")
    return folder


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_clip(folder: Path, device: torch.device) -> tuple[torch.nn.Module, object]:
    """The CLIP model (``AutoModel``, evaluation mode, float32) and processor (``AutoProcessor``) of ``folder``."""
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(folder, local_files_only=True).eval().to(device, torch.float32)
    return model, AutoProcessor.from_pretrained(folder, local_files_only=True)


def pil_images(images) -> list[Image.Image]:
    """Any image batch the rewards take -> RGB PIL images at their own size (the processor resizes)."""
    return [Image.fromarray(a) for a in as_uint8_list(images)]


@torch.no_grad()
def image_embeddings(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """[B, D] unit-length projected image embeddings (the same with transformers 4 and 5, whose
    ``get_image_features`` return types differ)."""
    pooled = model.vision_model(pixel_values=pixel_values).pooler_output
    embeds = model.visual_projection(pooled)
    return embeds / embeds.norm(dim=-1, keepdim=True)


@torch.no_grad()
def text_embeddings(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, D] unit-length projected text embeddings."""
    pooled = model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    embeds = model.text_projection(pooled)
    return embeds / embeds.norm(dim=-1, keepdim=True)
