"""The tiny model's pretraining config (:class:`PretrainConfig`), kept apart from :mod:`flowopd.pretrain` (which
re-exports it) so that reading and checking it imports no torch or diffusers. The architecture it trains is
:class:`flowopd.models.tiny_config.TinyConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models.tiny_config import TinyConfig
from ..world.prompts import TASKS
from .base import ConfigBase, fail, option


@dataclass
class PretrainConfig(ConfigBase, kind="pretrain"):
    """Pretraining of the tiny model on rendered scenes: rectified flow, logit-normal t, AdamW, EMA."""

    seed: int = option(0, "random seed of the scenes, captions, noise and initialisation", min=0, group="run")
    steps: int = option(5000, "optimizer steps", min=1, group="run")
    batch_size: int = option(64, "images per step", min=1, group="run")
    lr: float = option(7e-4, "peak AdamW learning rate (warm-up, then cosine decay to a tenth)", min=0,
                       min_open=True, group="optimizer")
    weight_decay: float = option(0.01, "AdamW weight decay", min=0, group="optimizer")
    warmup_steps: int = option(500, "linear learning-rate warm-up steps", min=0, group="optimizer")
    ema_decay: float = option(0.999, "decay of the weights' EMA (the EMA is the saved model)", min=0, max=1,
                              group="optimizer")
    caption_dropout: float = option(0.1, "fraction of captions replaced by the empty prompt (for guidance)", min=0,
                                    max=1, group="data")
    # A negative mean puts more steps at low noise, where corners and edges are decided.
    logit_mean: float = option(0.0, "training timesteps t = sigmoid(N(logit_mean, logit_std)), SD3's "
                                    "logit-normal; a negative mean trains more at low noise", group="data")
    logit_std: float = option(1.0, "std of the logit-normal timesteps (1.0 is SD3's)", min=0, min_open=True,
                              group="data")
    task_weights: dict = option({"compose": 0.6, "text": 0.15, "prefer": 0.25},
                                "task -> share of its prompt generator in the training captions", group="data")
    checkpoint_every: int = option(500, "save the EMA model and a resumable state every this many steps", min=1,
                                   group="run")
    keep_checkpoints: bool = option(False, "also keep the EMA model of every checkpoint in ema_stepNNNNNN/",
                                    group="run")
    init_from: str = option("", "a saved tiny model whose weights start training (continued pretraining); "
                                "empty = from scratch", group="run")
    model: TinyConfig = option(TinyConfig(), "the tiny model's architecture", group="model")

    def check(self) -> None:
        bad = set(self.task_weights) - set(TASKS)
        if bad:
            fail("task_weights", self.task_weights, f"it names unknown tasks {sorted(bad)}: use {TASKS}")
