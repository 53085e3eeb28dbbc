"""``pickscore``: PickScore (Kirstain et al. 2023), a CLIP fine-tuned on Pick-a-Pic preferences, from a local folder.

Score = ``logit_scale.exp() * cos(text embedding, image embedding)``; the reward is score / 26, Flow-GRPO's
training scale (tables report the raw score, about 21-23 for SD3.5). The folder holds the model
``yuvalkirstain/PickScore_v1`` and the processor of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (:data:`HOW`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .clip import BATCH, default_device, image_embeddings, load_clip, pil_images, require_files, text_embeddings

SCALE = 26.0  # Flow-GRPO divides PickScore by 26 for training
HOW = ("Save them there on a machine with internet: python -c \"from transformers import AutoModel, AutoProcessor; "
       "d='FOLDER'; AutoModel.from_pretrained('yuvalkirstain/PickScore_v1').save_pretrained(d); "
       "AutoProcessor.from_pretrained('laion/CLIP-ViT-H-14-laion2B-s32B-b79K').save_pretrained(d)\" and copy the "
       "folder here")


class PickScore:
    """The PickScore reward of the CLIP model and processor in ``folder`` (loaded on the first call).

    Args:
        folder: a folder written by ``save_pretrained`` of the model and of the processor.
        device: where the model runs; None = the GPU when there is one.

    Raises:
        RewardWeightsMissing: (a FileNotFoundError) when ``folder`` lacks ``config.json``, naming the path.
    """

    def __init__(self, folder: str | Path, device: torch.device | str | None = None):
        self.folder = require_files("pickscore", folder, ("config.json",), HOW.replace("FOLDER", str(folder)))
        self.device = torch.device(device) if device is not None else default_device()
        self._model = self._processor = None

    def __repr__(self) -> str:
        return f"PickScore({str(self.folder)!r})"

    def scores(self, images, prompts: list[str]) -> torch.Tensor:
        """[N] raw PickScores (about 15-25 for real photos) of each image with its prompt."""
        if self._model is None:
            self._model, self._processor = load_clip(self.folder, self.device)
        model, processor = self._model, self._processor
        max_length = model.config.text_config.max_position_embeddings  # 77 for CLIP
        pil, out = pil_images(images), []
        for start in range(0, len(pil), BATCH):
            pixels = processor(images=pil[start:start + BATCH], return_tensors="pt")["pixel_values"]
            text = processor(text=list(prompts[start:start + BATCH]), padding=True, truncation=True,
                             max_length=max_length, return_tensors="pt")
            image_emb = image_embeddings(model, pixels.to(self.device, torch.float32))
            text_emb = text_embeddings(model, text["input_ids"].to(self.device),
                                       text["attention_mask"].to(self.device))
            out.append(model.logit_scale.exp().detach() * (image_emb * text_emb).sum(-1))
        return torch.cat(out).float().cpu() if out else torch.zeros(0)

    def __call__(self, images, prompts: list[str], metadata: list[dict]) -> list[float]:
        return (self.scores(images, prompts) / SCALE).tolist()
