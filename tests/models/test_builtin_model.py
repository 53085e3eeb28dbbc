"""The committed built-in checkpoint loads and generates offline (what `make app` serves)."""

from __future__ import annotations

import json

import torch

from flowopd.models import DEFAULT_MODEL_DIR, load_model
from flowopd.models.tiny import TinyFlowModel
from flowopd.sampling import generate


def test_builtin_checkpoint_is_small_and_complete():
    files = {p.name: p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir()}
    assert {"model.safetensors", "config.json", "vocab.json", "pretrain_config.json"} <= set(files)
    assert files["model.safetensors"] < 10 * 2**20  # "a few MB"
    assert json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["backend"] == "tiny"


def test_builtin_model_generates_deterministic_images():
    model = load_model()
    assert isinstance(model, TinyFlowModel)
    prompts = ['a sign that says "HAT"', "a photo of three circles"]
    first = generate(model, prompts, seeds=[0, 1], num_steps=4, guidance=3.0)
    again = generate(model, prompts[:1], seeds=[0], num_steps=4, guidance=3.0)
    assert first.shape == (2, 3, 32, 32) and first.dtype == torch.float32
    assert 0.0 <= float(first.min()) and float(first.max()) <= 1.0
    assert torch.allclose(first[0], again[0], atol=1e-5)  # a seed gives the same image in any batch
    assert not torch.allclose(first[0], first[1])
