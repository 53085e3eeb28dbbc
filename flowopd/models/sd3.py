"""The Stable Diffusion 3.5 backend: the components of a diffusers ``StableDiffusion3Pipeline``.

Prompts go through the pipeline's own ``encode_prompt`` (CLIP-L + CLIP-G + T5), so the embeddings are
exactly the real pipeline's; images map to latents through its VAE with the config's shift/scaling.
:func:`flowopd.testing.tiny_random_pipeline` builds the same stack with random tiny weights in code, for
tests and for trying the SD3 path without downloading anything.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import MappingProxyType

import torch
from diffusers import StableDiffusion3Pipeline
from torch import nn

from ..reward_names import SD35_TASK_REWARDS
from . import looks_like_hub_id
from .base import FlowModel, PromptEmbeds
from .presets import SD35_MEDIUM

log = logging.getLogger(__name__)

SETTINGS_FILE = "flowopd.json"  # our sampling settings, written next to the pipeline's model_index.json
_FIX = (f"download {SD35_MEDIUM} to a local folder (`hf download {SD35_MEDIUM} --local-dir PATH`, "
        "after accepting its licence on the Hub) and pass --model PATH")


class SD3FlowModel(FlowModel):
    """SD3/SD3.5 as a :class:`FlowModel`; the text encoders and VAE are frozen, the transformer is not.

    Args:
        pipe: a ``StableDiffusion3Pipeline`` (``text_encoder_3`` may be ``None``: zero T5 embeddings).
        image_size: side of the generated images in pixels; latents are ``image_size // 8`` for SD3.5.
        max_sequence_length: T5 tokens per prompt; the sequence is 77 CLIP tokens plus these.
    """

    default_gradient_checkpointing = True  # activations dominate SD3's training memory (docs/sd35.md)
    default_cache_prompts = True  # the three text encoders are 10 GiB in half precision
    default_task_rewards = MappingProxyType(SD35_TASK_REWARDS)  # real images: the paper's reward of each task

    def __init__(self, pipe: StableDiffusion3Pipeline, image_size: int = 512, max_sequence_length: int = 128):
        self.pipe = pipe
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        tcfg = self.transformer.config
        step = self.vae_scale_factor * tcfg.patch_size
        largest = tcfg.pos_embed_max_size * step
        if image_size % step or not step <= image_size <= largest:
            raise ValueError(f"resolution {image_size} does not suit this model: pass --resolution (the config's "
                             f"resolution field) as a multiple of {step} from {step} to {largest} pixels")
        if max_sequence_length < 1:
            raise ValueError(f"max_sequence_length {max_sequence_length} must be >= 1 (SD3.5 uses up to 256)")
        self.image_size = image_size
        self.max_sequence_length = max_sequence_length
        side = image_size // self.vae_scale_factor
        self.latent_shape = (tcfg.in_channels, side, side)
        self.shift = float(pipe.scheduler.config.shift)
        for frozen in (pipe.text_encoder, pipe.text_encoder_2, pipe.text_encoder_3, self.vae):
            if frozen is not None:  # never trained here; no graph through them saves memory
                frozen.eval().requires_grad_(False)

    def modules(self) -> dict[str, nn.Module]:
        """The pipeline's modules: transformer, vae, text_encoder, text_encoder_2 (and text_encoder_3)."""
        return {name: m for name, m in self.pipe.components.items() if isinstance(m, nn.Module)}

    def to(self, device: torch.device | str) -> SD3FlowModel:
        """Move the whole pipeline to ``device``."""
        self.pipe.to(device)
        return self

    def encode_prompts(self, prompts: list[str]) -> PromptEmbeds:
        """Prompts -> seq [B, 77 + max_sequence_length, joint_attention_dim], pooled [B, 2048 for SD3.5]."""
        seq, _, pooled, _ = self.pipe.encode_prompt(
            prompt=list(prompts), prompt_2=None, prompt_3=None, device=self.device,
            do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length)
        return PromptEmbeds(seq, pooled)

    def encode_images(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> latents [B, C, H / 8, W / 8] (a sample of the VAE posterior)."""
        x = images.to(self.vae.device, self.vae.dtype) * 2 - 1
        z = self.vae.encode(x).latent_dist.sample(generator)
        shift, scale = self._vae_shift_scale()
        return (z.float() - shift) * scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, h, w] -> images [B, 3, h * 8, w * 8] in [0, 1] (float32)."""
        shift, scale = self._vae_shift_scale()
        z = latents.float() / scale + shift
        images = self.vae.decode(z.to(self.vae.device, self.vae.dtype), return_dict=False)[0]
        return ((images.float() + 1) / 2).clamp(0, 1)

    def _vae_shift_scale(self) -> tuple[float, float]:
        cfg = self.vae.config
        return float(cfg.shift_factor or 0.0), float(cfg.scaling_factor)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write the whole pipeline (diffusers layout) plus our image size and sequence length."""
        d = Path(directory)
        self.pipe.save_pretrained(d)
        settings = {"backend": "sd3", "image_size": self.image_size, "max_sequence_length": self.max_sequence_length}
        (d / SETTINGS_FILE).write_text(json.dumps(settings, indent=1))

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, *, dtype: torch.dtype = torch.float32,
                        device: torch.device | str = "cpu", image_size: int | None = None,
                        max_sequence_length: int | None = None) -> SD3FlowModel:
        """Load a pipeline folder or a Hub id (offline: only if cached).

        ``image_size`` (the resolution) and ``max_sequence_length`` default to those saved by
        :meth:`save_pretrained`, else the family's resolution (:func:`default_resolution`) and 128.

        Raises:
            FileNotFoundError: the folder does not exist, or the Hub id is not cached and cannot be fetched.
            ValueError: the folder is not a loadable ``StableDiffusion3Pipeline``.
        """
        name = str(path_or_hub_id)
        local = Path(name).expanduser()
        kwargs: dict = {"dtype": dtype}
        settings: dict = {}
        if local.exists():
            kwargs.update(_check_folder(local))
            if (local / SETTINGS_FILE).is_file():
                try:
                    settings = json.loads((local / SETTINGS_FILE).read_text())
                except json.JSONDecodeError as err:
                    raise ValueError(f"{local / SETTINGS_FILE} is not valid JSON ({err}): fix or delete it") from None
            source = str(local)
        elif looks_like_hub_id(name):
            source = name
        else:
            raise FileNotFoundError(f"model folder {name} does not exist: pass a diffusers pipeline folder; {_FIX}")
        try:
            pipe = StableDiffusion3Pipeline.from_pretrained(source, **kwargs)
        except OSError as err:  # diffusers raises OSError (EnvironmentError) for anything not downloadable
            if local.exists():
                raise ValueError(f"pipeline folder {name} could not be loaded ({_short(err)}): {_FIX}") from None
            raise FileNotFoundError(f"cannot load {name}: it is not in the local Hugging Face cache and cannot be "
                                    f"downloaded here ({_short(err)}); {_FIX}") from None
        except (ValueError, KeyError, RuntimeError, TypeError) as err:  # missing components, shape mismatches
            raise ValueError(f"{name} is not a loadable StableDiffusion3Pipeline ({_short(err)}): {_FIX}") from None
        log.info("loaded SD3 pipeline %s (%s)", name, dtype)
        model = cls(pipe, image_size=image_size or settings.get("image_size")
                    or default_resolution(pipe.transformer, 2 ** (len(pipe.vae.config.block_out_channels) - 1)),
                    max_sequence_length=max_sequence_length or settings.get("max_sequence_length", 128))
        return model.to(device)


def default_resolution(transformer, vae_factor: int = 8) -> int:
    """The family's resolution: 1024 for SD3.5 Large (38 blocks) and SD3 Medium (no dual-attention blocks), 512
    for SD3.5 Medium (Flow-GRPO's setting); never more than the position table covers."""
    cfg = transformer.config
    side = 1024 if cfg.num_layers >= 38 or not getattr(cfg, "dual_attention_layers", ()) else 512
    return min(side, cfg.pos_embed_max_size * cfg.patch_size * vae_factor)


def _check_folder(folder: Path) -> dict:
    """Reject folders that are not SD3 pipelines before diffusers does (its errors are vaguer)."""
    index = folder / "model_index.json"
    if not index.is_file():
        raise ValueError(f"{folder} is not a diffusers pipeline folder (no model_index.json): {_FIX}")
    try:
        cls_name = json.loads(index.read_text()).get("_class_name")
    except json.JSONDecodeError as err:
        raise ValueError(f"{index} is not valid JSON ({err}): re-download the pipeline; {_FIX}") from None
    if cls_name not in (None, "StableDiffusion3Pipeline"):
        raise ValueError(f"{folder} holds a {cls_name}, not a StableDiffusion3Pipeline: {_FIX}")
    # A pipeline saved without T5 must say so, or diffusers rejects the missing component.
    return {} if (folder / "text_encoder_3").is_dir() else {"text_encoder_3": None, "tokenizer_3": None}


def _short(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "..."
