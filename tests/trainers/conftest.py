"""Helpers for the trainer tests: the small random model, random teacher adapters, small stage configs.

Every trainer test builds its own model (about 0.1 s), because training adds adapters to the transformer.
Configs are as small as a run can be: 8 images per epoch in groups of 4, 3 SDE steps (2 trained).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

SMALL = dict(num_layers=1, num_heads=2, head_dim=16, text_width=32, text_layers=1, pooled_dim=32)
FAST = dict(epochs=1, batch_size=8, group_size=4, train_batch_size=4, num_steps=3, optimizer_steps_per_epoch=2,
            eval_steps=3, ema=False, sample_every=0, checkpoint_every=1, lora_rank=4, lora_alpha=8.0)


def _tiny(seed: int = 0):
    from flowopd.models.tiny import TinyConfig, TinyFlowModel
    from flowopd.pretrain import build_tokenizer

    torch.manual_seed(seed)
    return TinyFlowModel(TinyConfig(**SMALL), build_tokenizer(24))


def _randomise(model, name: str, std: float = 0.2, seed: int = 1) -> None:
    from flowopd.adapters import adapter_parameters

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter_parameters(model, name).values():
            p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture
def tiny():
    """``tiny(seed=0)``: a new small random TinyFlowModel."""
    return _tiny


@pytest.fixture
def randomise():
    """``randomise(model, name, std=0.2, seed=1)``: random A and B for adapter ``name``."""
    return _randomise


@pytest.fixture
def make_teachers(tmp_path: Path):
    """``make_teachers(model, {task: seed})`` -> ``{task: folder}``: random LoRA teachers saved for ``model``'s base
    (the adapters are removed from the model again)."""
    from flowopd.adapters import add_lora, delete_adapter, save_adapter

    def make(model, seeds: dict[str, int], std: float = 0.2) -> dict[str, str]:
        out = {}
        for task, seed in seeds.items():
            add_lora(model, "tmp_teacher", 4, 8.0)
            _randomise(model, "tmp_teacher", std=std, seed=seed)
            out[task] = str(save_adapter(model, "tmp_teacher", tmp_path / f"teacher-{task}"))
            with warnings.catch_warnings():  # "... was active which is now deleted": expected
                warnings.simplefilter("ignore")
                delete_adapter(model, "tmp_teacher")
        return out

    return make


@pytest.fixture
def fast() -> dict:
    """The FAST run-size fields (a copy), for configs written as JSON."""
    return dict(FAST)


@pytest.fixture
def forward_rl_config():
    """``forward_rl_config(kind, **overrides)``: an NFTConfig (``nft``) or AWMConfig (``awm``) of the FAST size
    with 2 noise levels per sample, on the prefer reward."""
    from flowopd.config.base import config_class, config_kinds

    config_kinds()

    def make(kind: str, **kw):
        return config_class(kind)(**{**FAST, "timesteps_per_sample": 2, "rewards": {"prefer": 1.0},
                                     "prompt_tasks": {"prefer": 1.0}, **kw})

    return make


@pytest.fixture
def grpo_config():
    """``grpo_config(**overrides)``: a GRPOConfig of the FAST size on the prefer reward (dense, never all-equal)."""
    from flowopd.methods.grpo.config import GRPOConfig

    def make(**kw):
        return GRPOConfig(**{**FAST, "rewards": {"prefer": 1.0}, "prompt_tasks": {"prefer": 1.0}, **kw})

    return make


@pytest.fixture
def opd_config():
    """``opd_config(teachers, **overrides)``: an OPDConfig of the FAST size on the teachers' tasks."""
    from flowopd.methods.opd.config import OPDConfig

    def make(teachers: dict[str, str], **kw):
        return OPDConfig(**{**FAST, "teachers": teachers, "prompt_tasks": {t: 1.0 for t in teachers},
                            "log_rewards": False, **kw})

    return make
