"""``aesthetic``: the LAION improved aesthetic predictor, an MLP on unit CLIP ViT-L/14 image embeddings.

The folder holds the CLIP model and processor (``openai/clip-vit-large-patch14``, ``save_pretrained``) and the
MLP's weights as ``sac+logos+ava1-l14-linearMSE.pth`` (the predictor's release, read as tensors only:
``weights_only``) or ``aesthetic_head.safetensors``. The predictor rates 1-10; the reward is rating / 10.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .clip import BATCH, RewardWeightsMissing, default_device, image_embeddings, load_clip, pil_images, require_files

HEAD_FILES = ("sac+logos+ava1-l14-linearMSE.pth", "aesthetic_head.safetensors")
SCALE = 10.0  # the predictor rates images 1-10
HOW = ("Save them there on a machine with internet: the model and processor of openai/clip-vit-large-patch14 "
       "(AutoModel/AutoProcessor .save_pretrained('FOLDER')) and sac+logos+ava1-l14-linearMSE.pth from "
       "github.com/christophschuhmann/improved-aesthetic-predictor, then copy the folder here")


def load_head(path: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The MLP's linear layers (weight, bias) in order, from the predictor's ``layers.<i>.weight``/``.bias``.

    Its layers have no activation between them (the release's ReLUs are commented out; dropout is off at
    evaluation), so the head is exactly these affine maps in a row.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: nothing is unpickled
    state = {k.removeprefix("model."): v for k, v in state.items()}
    index = sorted(int(k.split(".")[1]) for k in state if k.startswith("layers.") and k.endswith(".weight"))
    layers = [(state[f"layers.{i}.weight"].float(), state[f"layers.{i}.bias"].float()) for i in index
              if f"layers.{i}.bias" in state]
    chained = all(a[0].shape[0] == b[0].shape[1] for a, b in zip(layers, layers[1:]))
    if not layers or len(layers) != len(index) or not chained or layers[-1][0].shape[0] != 1:
        raise ValueError(f"{path} is not an aesthetic head: expected layers.<i>.weight and .bias of linear layers "
                         f"that chain down to one output, got keys {sorted(state)[:8]}")
    return layers


class Aesthetic:
    """The aesthetic reward of the CLIP model, processor and MLP head in ``folder`` (loaded on the first call).

    Raises:
        RewardWeightsMissing: (a FileNotFoundError) when ``folder`` lacks the CLIP's ``config.json`` or a head file.
    """

    def __init__(self, folder: str | Path, device: torch.device | str | None = None):
        how = HOW.replace("FOLDER", str(folder))
        self.folder = require_files("aesthetic", folder, ("config.json",), how)
        heads = [self.folder / f for f in HEAD_FILES if (self.folder / f).is_file()]
        if not heads:
            raise RewardWeightsMissing(f"the aesthetic reward needs its MLP head in {self.folder}: "
                                       f"{' or '.join(HEAD_FILES)}. {how}")
        self.head_file = heads[0]
        self.device = torch.device(device) if device is not None else default_device()
        self._model = self._processor = self._head = None

    def __repr__(self) -> str:
        return f"Aesthetic({str(self.folder)!r})"

    @torch.no_grad()
    def ratings(self, images) -> torch.Tensor:
        """[N] the predictor's ratings (about 1-10)."""
        if self._model is None:
            self._head = [(w.to(self.device), b.to(self.device)) for w, b in load_head(self.head_file)]
            self._model, self._processor = load_clip(self.folder, self.device)
        processor = getattr(self._processor, "image_processor", self._processor)
        pil, out = pil_images(images), []
        for start in range(0, len(pil), BATCH):
            pixels = processor(images=pil[start:start + BATCH], return_tensors="pt")["pixel_values"]
            x = image_embeddings(self._model, pixels.to(self.device, torch.float32))
            if x.shape[-1] != self._head[0][0].shape[1]:
                raise ValueError(f"the aesthetic head {self.head_file} takes {self._head[0][0].shape[1]}-d "
                                 f"embeddings but the CLIP in {self.folder} gives {x.shape[-1]}-d ones")
            for w, b in self._head:
                x = x @ w.T + b
            out.append(x[:, 0])
        return torch.cat(out).float().cpu() if out else torch.zeros(0)

    def __call__(self, images, prompts: list[str], metadata: list[dict]) -> list[float]:
        return (self.ratings(images) / SCALE).tolist()
