"""The supervised teacher's config (``kind="sft"``): a LoRA fine-tuned with the flow-matching loss on an image
set with captions; help and bounds on every field, validation naming the field and the fix.

Importing it imports no torch. The method: docs/method.md, "SFT".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config.base import ConfigBase, fail, option
from ...config.choices import PRECISIONS, REPORT_TARGETS
from ...datasets import RESIZE_MODES
from ...models.presets import SD35_MEDIUM

__all__ = ["SFTConfig"]


@dataclass
class SFTConfig(ConfigBase, kind="sft"):
    """A supervised teacher: a fresh LoRA fine-tuned with the flow-matching loss on an image set with captions
    (a style or subject LoRA, as kohya_ss and fluxgym train; ``flowopd world dataset`` writes the tiny world's)."""

    data: str = option("", "folder of images with same-name .txt captions, or with a metadata.jsonl of "
                       "{\"file_name\", \"text\"} lines (preferred when both exist); required to train",
                       group="data")
    reg_data: str = option("", "regularization image set (the base's own samples of other prompts: `flowopd world "
                           "dataset --source model`) for prior preservation (docs/method.md, SFT); empty = none",
                           group="data")
    prior_weight: float = option(1.0, "weight of the regularization set's loss (with reg_data)", min=0,
                                 group="data")
    resize: str = option("downscale", "square images larger than the model's side: downscale (box filter) | "
                         "refuse; other sizes (not square, smaller) are always refused", choices=RESIZE_MODES,
                         group="data")
    caption_dropout: float = option(0.1, "fraction of captions replaced by the empty prompt, so that the LoRA "
                                    "also learns the unconditional velocity classifier-free guidance uses (as "
                                    "pretraining's 0.1)", min=0, max=1, max_open=True, group="data")
    model: str | None = option(None, "base model: tiny checkpoint folder, SD3 pipeline folder, Hub id; None = "
                               "built-in", group="model")
    resolution: int | None = option(None, "image side in pixels of an SD3 base (None = its family's: 512 for SD3.5 "
                                    "Medium, 1024 for Large and SD3); the tiny model draws its own size", min=16,
                                    max=4096, group="model")
    seed: int = option(0, "random seed of the LoRA's initialisation, the image order, the noise and the timesteps",
                       min=0, group="model")
    lora_rank: int = option(8, "rank of the new LoRA", min=1, group="model")
    lora_alpha: float = option(16.0, "alpha of the new LoRA (its scale is alpha / rank)", min=0, min_open=True,
                               group="model")
    adapter_name: str = option("teacher", "name of the trained LoRA adapter", group="model")
    steps: int = option(600, "optimizer steps", min=1, group="optimizer")
    batch_size: int = option(32, "images per optimizer step (drawn in a new shuffled order every pass over the "
                             "set)", min=1, group="optimizer")
    lr: float = option(5e-4, "AdamW learning rate (constant)", min=0, min_open=True, group="optimizer")
    weight_decay: float = option(0.0, "AdamW weight decay", min=0, group="optimizer")
    checkpoint_every: int = option(100, "save a resumable checkpoint every this many steps (and at the end)",
                                   min=1, group="run")
    sample_every: int = option(100, "every this many steps, ODE samples of the set's first captions (0 = never)",
                               min=0, group="run")
    mixed_precision: str = option("no", "no | fp16 | bf16 for the frozen base (the LoRA stays fp32), as the RL "
                                  "stages", choices=PRECISIONS, group="run")
    report_to: str = option("none", "also send the run's metrics and samples to: none | tensorboard (event files in "
                            "the run folder) | wandb (offline unless configured); the package is optional",
                            choices=REPORT_TARGETS, group="run")
    gradient_checkpointing: bool | None = option(None, "recompute the transformer's activations in the backward "
                                                 "pass (less memory, a slower step); None = on for SD3, off for "
                                                 "the tiny model", group="run")
    sample_count: int = option(4, "how many of the set's captions the samples show", min=1, group="run")
    eval_steps: int = option(20, "ODE steps of the samples (40 for SD3.5)", min=1, max=1000, group="run")
    guidance: float = option(3.0, "CFG scale of the run's samples and of the teacher (its adapter's guidance)",
                             min=0, group="run")

    def check(self) -> None:
        for name in ("data", "reg_data"):
            if not isinstance(getattr(self, name), str):
                fail(name, getattr(self, name), "give the image set's folder as a string")
        if not self.adapter_name.strip():
            fail("adapter_name", self.adapter_name, "give the adapter a name, e.g. 'teacher'")

    def total_steps(self) -> int:
        """The optimizer steps of the whole run."""
        return self.steps

    def require_data(self) -> None:
        """Training needs an image set: fail naming ``data`` when it is empty or not a folder (``reg_data``
        likewise when it is set)."""
        if not self.data:
            fail("data", self.data, "give the folder of the image set to train on (--data DIR; "
                  "`flowopd world dataset --task text --n 256 --out DIR` writes one)")
        if not Path(self.data).expanduser().is_dir():
            fail("data", self.data, "this folder does not exist: give the folder of the image set to train on")
        if self.reg_data and not Path(self.reg_data).expanduser().is_dir():
            fail("reg_data", self.reg_data, "this folder does not exist: give the regularization set's folder "
                 "(`flowopd world dataset --source model` writes one) or leave it empty")

    @classmethod
    def sd35_medium(cls, **overrides: Any) -> SFTConfig:
        """SD3.5 Medium: r 32 / alpha 32, lr 1e-4, batch 8, 40-step samples at CFG 4.5 (the paper trains no SFT
        teacher; these are common style-LoRA settings)."""
        return cls(**{"model": SD35_MEDIUM, "lora_rank": 32, "lora_alpha": 32.0, "lr": 1e-4, "batch_size": 8,
                      "steps": 2000, "checkpoint_every": 250, "sample_every": 250, "eval_steps": 40,
                      "guidance": 4.5, "mixed_precision": "bf16", **overrides})
