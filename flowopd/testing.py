"""Tiny random models for tests and quick tries: an SD3.5-shaped ``StableDiffusion3Pipeline`` built in code.

Nothing is downloaded; everything is deterministic in its seed.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

# Words of the synthetic world (anything else maps to <unk>).
_TINY_WORDS = (
    "a", "an", "the", "of", "and", "with", "on", "in", "that", "says", "sign", "word", "label", "reading",
    "left", "right", "above", "below", "one", "two", "three", "four", "small", "big", "circle", "square",
    "triangle", "red", "green", "blue", "yellow", "orange", "purple", "black", "white", "gray", "pink", "brown",
)


def _tiny_tokenizer(max_length: int):
    """A WordLevel tokenizer (lowercase, whitespace split, <bos> ... <eos>) as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", '"', *_TINY_WORDS])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>",
                                                      special_tokens=[("<bos>", 2), ("<eos>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", model_max_length=max_length)


def tiny_random_pipeline(seed: int = 0, *, with_t5: bool = True, image_size: int = 32) -> StableDiffusion3Pipeline:
    """A real ``StableDiffusion3Pipeline`` with tiny random components (about 1 M parameters).

    Shaped like SD3.5-Medium in miniature: 16 latent channels, VAE factor 2 (so 32 px images have
    16x16 latents), a dual-attention first block with RMS qk-norm, CLIP width 32 + 32 padded to the
    T5 width 64. Deterministic in ``seed``; the global RNG is left untouched.
    """
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    tok = _tiny_tokenizer(max_length=16)
    n_vocab = len(tok)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip_cfg = CLIPTextConfig(vocab_size=n_vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, max_position_embeddings=16, projection_dim=32,
                                  bos_token_id=2, eos_token_id=3, pad_token_id=0)  # CLIP pools at the eos id
        te1, te2 = CLIPTextModelWithProjection(clip_cfg), CLIPTextModelWithProjection(clip_cfg)
        t5 = T5EncoderModel(T5Config(vocab_size=n_vocab, d_model=64, d_ff=128, num_layers=2, num_heads=2, d_kv=32,
                                     dropout_rate=0.0, pad_token_id=0, eos_token_id=3)) if with_t5 else None
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(16, 32),
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            layers_per_block=1, norm_num_groups=8, sample_size=image_size,
                            shift_factor=0.0609, scaling_factor=1.5305,  # SD3.5's values, to exercise the maths
                            use_quant_conv=False, use_post_quant_conv=False)
        transformer = SD3Transformer2DModel(
            sample_size=image_size // 2, patch_size=2, in_channels=16, out_channels=16, num_layers=2,
            attention_head_dim=32, num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=64,
            pooled_projection_dim=64, pos_embed_max_size=image_size // 4, dual_attention_layers=(0,),
            qk_norm="rms_norm")
    for m in (te1, te2, t5, vae, transformer):
        if m is not None:
            m.eval()
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
        text_encoder=te1, tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok,
        text_encoder_3=t5, tokenizer_3=tok if with_t5 else None)
