"""The built-in tiny model: diffusers' ``SD3Transformer2DModel`` in pixel space plus a small text encoder.

Pixels are the latents (``x = 2 * image - 1``, an identity "VAE"), so decoding is free. The text
encoder gives SD3-style outputs: a token sequence for the transformer's joint attention and a pooled
vector for its timestep/text embedding. Character tokens carry slot and word-length embeddings so the
image can find the letter each slot should show.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from diffusers import SD3Transformer2DModel
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..tokenizer import MAX_SLOT, PromptTokenizer
from .base import FlowModel, PromptEmbeds
from .tiny_config import TinyConfig  # re-exported; the config lives in a torch-free module

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"


class TinyTextEncoder(nn.Module):
    def __init__(self, vocab_size: int, cfg: TinyConfig):
        super().__init__()
        d = cfg.text_width
        self.token = nn.Embedding(vocab_size, d)
        self.position = nn.Embedding(cfg.max_length, d)
        self.slot = nn.Embedding(MAX_SLOT + 1, d)
        self.length = nn.Embedding(MAX_SLOT + 1, d)
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=2 * d, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.text_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.pool = nn.Linear(d, cfg.pooled_dim)

    def forward(self, ids, slots, lengths, mask) -> PromptEmbeds:
        pos = torch.arange(ids.shape[1], device=ids.device)
        h = self.token(ids) + self.position(pos) + self.slot(slots) + self.length(lengths)
        h = self.norm(self.encoder(h, src_key_padding_mask=~mask))
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = self.pool((h * m).sum(1) / m.sum(1).clamp(min=1))
        return PromptEmbeds(h * m, pooled)


def build_transformer(cfg: TinyConfig) -> SD3Transformer2DModel:
    width = cfg.num_heads * cfg.head_dim
    return SD3Transformer2DModel(
        sample_size=cfg.image_size, patch_size=cfg.patch_size, in_channels=3, out_channels=3,
        num_layers=cfg.num_layers, attention_head_dim=cfg.head_dim, num_attention_heads=cfg.num_heads,
        joint_attention_dim=cfg.text_width, caption_projection_dim=width, pooled_projection_dim=cfg.pooled_dim,
        pos_embed_max_size=cfg.image_size // cfg.patch_size)


class TinyFlowModel(FlowModel):
    def __init__(self, cfg: TinyConfig, tokenizer: PromptTokenizer):
        self.config = cfg
        self.tokenizer = tokenizer
        tokenizer.max_length = cfg.max_length
        self.transformer = build_transformer(cfg)
        self.text_encoder = TinyTextEncoder(len(tokenizer), cfg)
        self.latent_shape = (3, cfg.image_size, cfg.image_size)
        self.image_size = cfg.image_size
        self.shift = cfg.shift

    def modules(self) -> dict[str, nn.Module]:
        """The transformer and the text encoder (there is no VAE: pixels are the latents)."""
        return {"transformer": self.transformer, "text_encoder": self.text_encoder}

    def to(self, device: torch.device | str) -> TinyFlowModel:
        """Move both modules to ``device``."""
        for m in self.modules().values():
            m.to(device)
        return self

    def encode_prompts(self, prompts: list[str]) -> PromptEmbeds:
        """Prompts -> seq [B, max_length, text_width], pooled [B, pooled_dim]."""
        batch = self.tokenizer.encode(prompts)
        dev = self.device
        return self.text_encoder(batch.ids.to(dev), batch.slots.to(dev), batch.lengths.to(dev), batch.mask.to(dev))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, 3, H, W] in [-1, 1] -> images [B, 3, H, W] in [0, 1]."""
        return ((latents.float() + 1) / 2).clamp(0, 1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> latents [B, 3, H, W] in [-1, 1]."""
        return images.float() * 2 - 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name, m in self.modules().items() for k, v in m.state_dict().items()}

    def save(self, directory: str | Path, dtype: torch.dtype = torch.float16) -> None:
        """Write weights (half precision keeps the committed checkpoint a few MB), config and vocabulary."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().to(dtype).contiguous().cpu() for k, v in self.state_dict().items()},
                  str(d / WEIGHTS_FILE))
        (d / CONFIG_FILE).write_text(json.dumps({"backend": "tiny", **asdict(self.config)}, indent=1))
        self.tokenizer.save(d / VOCAB_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> TinyFlowModel:
        d = Path(directory)
        for name in (WEIGHTS_FILE, CONFIG_FILE, VOCAB_FILE):
            if not (d / name).is_file():
                raise FileNotFoundError(f"checkpoint {d} lacks {name}: pass a folder written by "
                                        "`flowopd pretrain` (or omit --model for the built-in one)")
        try:
            raw = json.loads((d / CONFIG_FILE).read_text())
            raw.pop("backend", None)
            model = cls(TinyConfig.from_dict(raw), PromptTokenizer.load(d / VOCAB_FILE))
            state = load_file(str(d / WEIGHTS_FILE))
        # SafetensorError: truncated or garbage weights; TypeError/AttributeError/ValueError: JSON of the
        # wrong shape (ValueError: a config field the config refuses).
        except (json.JSONDecodeError, KeyError, OSError, RuntimeError, SafetensorError, TypeError,
                AttributeError, ValueError) as err:
            raise ValueError(f"checkpoint {d} is corrupt ({err}): re-run `flowopd pretrain` or restore it "
                             "from git") from None
        for name, module in model.modules().items():
            prefix = f"{name}."
            sub = {k[len(prefix):]: v.float() for k, v in state.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(sub)
            except RuntimeError as err:
                raise ValueError(f"checkpoint {d} does not match its config ({str(err)[:200]}): "
                                 "re-run `flowopd pretrain`") from None
        return model
