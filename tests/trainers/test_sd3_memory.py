"""What lowers SD3 memory, checked on the tiny random SD3 pipeline: activation checkpointing (the same loss and LoRA
gradients as without it; on by default for SD3, off for the tiny model, set by every trainer from its config) and
the rollout's VAE decode in chunks (the same images)."""

from __future__ import annotations

import pytest
import torch

from flowopd.adapters import add_lora, trainable_parameters, use_adapter
from flowopd.flow_matching import flow_matching_loss
from flowopd.models.sd3 import SD3FlowModel
from flowopd.testing import tiny_random_pipeline


@pytest.fixture
def sd3() -> SD3FlowModel:
    return SD3FlowModel(tiny_random_pipeline(seed=0), image_size=32, max_sequence_length=16)


def _loss_and_grads(model, on: bool):
    model.set_gradient_checkpointing(on)
    params = trainable_parameters(model, "lora")
    for p in params:
        p.grad = None
    x0 = torch.rand(2, *model.latent_shape, generator=torch.Generator().manual_seed(0))
    cond = model.encode_prompts(["a red circle", "a sign that says word"])
    with use_adapter(model, "lora"):  # the backward recomputes the forward: the same adapter must be active
        fm = flow_matching_loss(model, x0, cond, torch.Generator().manual_seed(1))
        fm.loss.backward()
    return float(fm.loss.detach()), [p.grad.clone() for p in params]


def test_checkpointing_gives_the_same_loss_and_lora_gradients(sd3) -> None:
    add_lora(sd3, "lora", 4, 8.0, seed=3)
    with torch.no_grad():  # B = 0 at init: give the LoRA weights so that every gradient is non-trivial
        for p in trainable_parameters(sd3, "lora"):
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    sd3.transformer.train()  # diffusers checkpoints blocks only in training mode with gradients on
    plain_loss, plain = _loss_and_grads(sd3, False)
    assert not sd3.transformer.gradient_checkpointing
    ckpt_loss, ckpt = _loss_and_grads(sd3, True)
    assert sd3.transformer.gradient_checkpointing
    assert ckpt_loss == pytest.approx(plain_loss, rel=1e-6)
    assert sum(bool(g.abs().sum() > 0) for g in plain) > len(plain) // 2  # the LoRA is really trained
    for a, b in zip(plain, ckpt):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_the_default_follows_the_model_and_the_config_overrides(sd3, tiny, grpo_config, tmp_path) -> None:
    assert sd3.set_gradient_checkpointing(None) and sd3.transformer.gradient_checkpointing
    model = tiny()
    assert not model.set_gradient_checkpointing(None) and not model.transformer.gradient_checkpointing
    from flowopd.methods.grpo.trainer import train_grpo

    train_grpo(model, grpo_config(gradient_checkpointing=True), tmp_path)
    assert model.transformer.gradient_checkpointing  # the trainer applied the config's choice


def test_the_rollout_decodes_in_chunks_to_the_same_images(sd3, tiny, grpo_config, tmp_path) -> None:
    from flowopd.methods.grpo.trainer import train_grpo
    from flowopd.training.rollout import decode_in_chunks

    latents = torch.randn(5, *sd3.latent_shape, generator=torch.Generator().manual_seed(0))
    whole = decode_in_chunks(sd3, latents)
    torch.testing.assert_close(decode_in_chunks(sd3, latents, 2), whole, rtol=1e-5, atol=1e-5)
    assert whole.shape == (5, 3, sd3.image_size, sd3.image_size) and whole.dtype == torch.float32
    seen = []
    train_grpo(tiny(), grpo_config(decode_chunk=3), tmp_path, callback=seen.append)  # 8 images: 3 + 3 + 2
    assert seen and all("reward/prefer" in m for m in seen)


def test_half_precision_casts_the_position_table_with_the_base(sd3) -> None:
    """The fp32 position table (0.84 GiB on SD3.5 Medium) follows the base into bf16; the velocity moves by bf16
    rounding only."""
    from flowopd.training.dist import cast_base

    x = torch.randn(1, *sd3.latent_shape, generator=torch.Generator().manual_seed(0))
    cond = sd3.encode_prompts(["a red circle"])
    reference = SD3FlowModel(tiny_random_pipeline(seed=0), image_size=32, max_sequence_length=16)
    for p in reference.transformer.parameters():
        p.data = p.data.to(torch.bfloat16)  # the base in bf16, its table still fp32
    cast_base(sd3, "bf16")
    assert sd3.transformer.pos_embed.pos_embed.dtype == torch.bfloat16
    assert reference.transformer.pos_embed.pos_embed.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(sd3.velocity(x, 0.5, cond), reference.velocity(x, 0.5, cond), atol=0.02, rtol=0.02)
