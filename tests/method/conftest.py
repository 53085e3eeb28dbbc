"""Helpers for the method tests: small random tiny models with named LoRA adapters.

Each test builds its own model (about 0.1 s) because adapters mutate the transformer.
"""

from __future__ import annotations

import pytest
import torch

SMALL = dict(num_layers=1, num_heads=2, head_dim=16, text_width=32, text_layers=1, pooled_dim=32)
PROMPTS = ["a red circle", "two blue squares", 'a sign that says "CAT"', "a green triangle"]


def make_model(seed: int = 0):
    from flowopd.models.tiny import TinyConfig, TinyFlowModel
    from flowopd.pretrain import build_tokenizer

    torch.manual_seed(seed)
    return TinyFlowModel(TinyConfig(**SMALL), build_tokenizer(24))


def randomise(model, name: str, std: float = 0.2, seed: int = 1) -> None:
    """Give adapter ``name`` random A and B, so it differs from the base (B starts at zero)."""
    from flowopd.adapters import adapter_parameters

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter_parameters(model, name).values():
            p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture
def model():
    return make_model()


@pytest.fixture
def batch(model):
    """(x [4, 3, 32, 32], cond embeddings) detached from the text encoder."""
    torch.manual_seed(3)
    with torch.no_grad():
        cond = model.encode_prompts(PROMPTS)
    return torch.randn(len(PROMPTS), *model.latent_shape), cond


@pytest.fixture(name="make_model")
def make_model_fixture():
    """The :func:`make_model` factory, for tests that need several models."""
    return make_model


@pytest.fixture(name="randomise")
def randomise_fixture():
    return randomise
