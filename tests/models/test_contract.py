"""Both backends implement the whole FlowModel contract; model_id is a declared, pinnable property."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch

from flowopd.models import FlowModel, TinyFlowModel, load_model
from flowopd.models.sd3 import SD3FlowModel
from flowopd.models.tiny import TinyConfig
from flowopd.testing import tiny_random_pipeline
from flowopd.tokenizer import PromptTokenizer

DECLARED = ("transformer", "latent_shape", "image_size", "shift", "lora_target_modules")


def _tiny() -> TinyFlowModel:
    return TinyFlowModel(TinyConfig(num_layers=1), PromptTokenizer.from_prompts(["a red circle"], 8))


def _sd3() -> SD3FlowModel:
    return SD3FlowModel(tiny_random_pipeline(seed=0), image_size=32, max_sequence_length=16)


@pytest.mark.parametrize("make", [_tiny, _sd3], ids=["tiny", "sd3"])
def test_every_abstract_member_and_attribute_is_implemented(make) -> None:
    model = make()
    assert FlowModel.__abstractmethods__ >= {"modules", "to", "encode_prompts", "decode", "encode_images"}
    for name in FlowModel.__abstractmethods__:
        assert not getattr(getattr(type(model), name), "__isabstractmethod__", False), name
    for name in DECLARED:
        assert getattr(model, name) is not None, name
    assert len(model.latent_shape) == 3 and isinstance(model.shift, float)
    assert model.modules()["transformer"] is model.transformer
    assert model.to("cpu") is model and model.device == torch.device("cpu") and model.dtype == torch.float32
    emb = model.encode_prompts(["a red circle", ""])
    x = torch.randn(2, *model.latent_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        v = model.velocity(x, 0.5, emb, model.uncond_embeds(2), guidance=2.0)
        images = model.decode(x)
    assert v.shape == x.shape and v.dtype == torch.float32
    assert images.shape == (2, 3, model.image_size, model.image_size)
    assert model.encode_images(images).shape == x.shape


def test_model_id_is_a_fingerprint_until_pinned() -> None:
    model = _tiny()
    before = model.model_id
    assert before.startswith("TinyFlowModel:") and before == model.fingerprint()
    assert model.pin_model_id() == before
    with torch.no_grad():
        next(model.transformer.parameters()).add_(1.0)
    assert model.fingerprint() != before and model.model_id == before  # pinned: adapters still match
    assert "model_id" in {name for name, _ in inspect.getmembers(FlowModel)}


def test_subset_of_prompt_embeddings() -> None:
    emb = load_model().encode_prompts(["a", "b", "c"])
    sub = emb.subset([2, 0])
    assert torch.equal(sub.seq, emb.seq[[2, 0]]) and torch.equal(sub.pooled, emb.pooled[[2, 0]])


def test_presets_and_configs_import_without_torch() -> None:
    code = ("import sys; from flowopd.models.presets import PRESETS, SD35_MEDIUM; "
            "import flowopd.config.rl as c, flowopd.methods; "
            "assert c.SD35_MEDIUM is SD35_MEDIUM == PRESETS['sd3']['sd3.5-medium']; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
