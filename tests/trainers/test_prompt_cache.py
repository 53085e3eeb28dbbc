"""Prompt embeddings computed once (flowopd.models.prompt_cache): the same embeddings as the live encoders, on the
tiny model and the tiny random SD3 pipeline; the cache file reused; a prompt outside the set still encoded; a
trainer with the field on routes its prompts through the cache."""

from __future__ import annotations

import torch

from flowopd.models.prompt_cache import cache_prompts
from flowopd.models.sd3 import SD3FlowModel
from flowopd.testing import tiny_random_pipeline

PROMPTS = ["a red circle", "a sign that says word", "a blue square on the left of a green star"]


def _live(model, prompts):
    with torch.no_grad():
        return type(model).encode_prompts(model, prompts)


def _same(got, want) -> None:
    """Equal up to the float rounding of a batch-size-dependent matmul: the cache encoded the prompts in other
    batches than the live call, and on some CPUs the pooled projection's kernel differs with the batch size
    (3.6e-7 seen on the 2-core machine, 0 on others). The token sequences come out bitwise equal."""
    assert torch.equal(got.seq, want.seq)
    torch.testing.assert_close(got.pooled, want.pooled, rtol=0, atol=1e-6)


def test_cached_embeddings_equal_the_live_encoders_on_the_tiny_model(small_model_dir, tmp_path) -> None:
    from flowopd.models.tiny import TinyFlowModel

    model = TinyFlowModel.load(small_model_dir)
    live = _live(model, PROMPTS)
    cache = cache_prompts(model, PROMPTS, tmp_path)
    got = model.encode_prompts(list(reversed(PROMPTS)))
    _same(got, type(live)(live.seq.flip(0), live.pooled.flip(0)))
    assert cache.misses == 0 and cache.path.is_file()
    other = model.encode_prompts(["a prompt outside the set"])  # encoded with the encoders brought back
    assert torch.equal(other.seq, _live(model, ["a prompt outside the set"]).seq) and cache.misses == 1

    again = TinyFlowModel.load(small_model_dir)  # a second run on the same base reads the file, encodes nothing
    reread = cache_prompts(again, PROMPTS, tmp_path)
    assert len(reread.table) == len(cache.table)
    assert torch.equal(again.encode_prompts(PROMPTS).seq, live.seq)


def test_cached_embeddings_equal_the_live_encoders_on_a_tiny_sd3_pipeline(tmp_path) -> None:
    model = SD3FlowModel(tiny_random_pipeline(seed=0), image_size=32, max_sequence_length=16)
    live = _live(model, PROMPTS)
    empty = _live(model, [""])
    cache_prompts(model, PROMPTS, tmp_path)
    got = model.encode_prompts(PROMPTS)
    _same(got, live)
    assert torch.equal(model.uncond_embeds(2).seq, empty.seq.repeat(2, 1, 1))  # the empty prompt is cached too
    assert all(next(m.parameters()).device.type == "cpu" for n, m in model.modules().items()
               if n.startswith("text_encoder"))


def test_a_trainer_with_the_field_on_encodes_through_the_cache(tiny, grpo_config, tmp_path) -> None:
    from flowopd.layout import PROMPT_CACHE_DIR
    from flowopd.methods.grpo.trainer import train_grpo

    model = tiny()
    assert not model.default_cache_prompts  # off by default for the tiny model; SD3 turns it on
    train_grpo(model, grpo_config(cache_prompt_embeddings=True), tmp_path)
    assert model.prompt_cache.misses == 0  # every rollout prompt was in the pre-pass
    assert list((tmp_path / PROMPT_CACHE_DIR).glob("*.pt"))
    assert SD3FlowModel.default_cache_prompts
