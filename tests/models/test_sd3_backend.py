"""The SD3 backend on a tiny random StableDiffusion3Pipeline: embeddings, sampling, save/load, errors, LoRA."""

from __future__ import annotations

import huggingface_hub
import pytest
import torch

from flowopd.models import LORA_TARGET_MODULES, TinyFlowModel, load_model
from flowopd.models.sd3 import SD3FlowModel
from flowopd.models.tiny import TinyConfig
from flowopd.sampling import generate
from flowopd.testing import tiny_random_pipeline
from flowopd.tokenizer import PromptTokenizer

PROMPTS = ["a red circle", 'a sign that says "CAT"']


@pytest.fixture(scope="module")
def model() -> SD3FlowModel:
    return SD3FlowModel(tiny_random_pipeline(seed=0), image_size=32, max_sequence_length=16)


def _fixed_velocity(m: SD3FlowModel) -> torch.Tensor:
    x = torch.randn(2, *m.latent_shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return m.raw_velocity(x, torch.tensor([0.9, 0.3]), m.encode_prompts(PROMPTS))


def test_embedding_shapes(model: SD3FlowModel) -> None:
    emb = model.encode_prompts(PROMPTS)
    # 16 CLIP tokens (CLIP-L and CLIP-G side by side, padded to T5's width) + 16 T5 tokens
    assert emb.seq.shape == (2, 16 + 16, model.transformer.config.joint_attention_dim)
    assert emb.pooled.shape == (2, model.transformer.config.pooled_projection_dim)
    assert not emb.seq.requires_grad  # frozen text encoders
    assert model.latent_shape == (16, 16, 16) and model.shift == 3.0


def test_generate_range_and_seed_determinism(model: SD3FlowModel) -> None:
    images = generate(model, PROMPTS, seeds=[1, 2], num_steps=2, guidance=4.5)
    assert images.shape == (2, 3, 32, 32)
    assert images.min() >= 0 and images.max() <= 1
    again = generate(model, PROMPTS[:1], seeds=[1], num_steps=2, guidance=4.5)
    torch.testing.assert_close(again[0], images[0])
    assert not torch.equal(images[0], generate(model, PROMPTS[:1], seeds=[3], num_steps=2, guidance=4.5)[0])


def test_matches_the_real_pipeline(model: SD3FlowModel) -> None:
    """Our Euler ODE + CFG + decode equal StableDiffusion3Pipeline.__call__ on the same noise."""
    ours = generate(model, PROMPTS[:1], seeds=[1], num_steps=2, guidance=4.5)
    noise = torch.randn(model.latent_shape, generator=torch.Generator().manual_seed(1))[None]
    theirs = model.pipe(PROMPTS[:1], height=32, width=32, num_inference_steps=2, guidance_scale=4.5,
                        max_sequence_length=16, latents=noise, output_type="pt").images
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


def test_random_pipeline_is_deterministic() -> None:
    a, b = tiny_random_pipeline(seed=0).transformer, tiny_random_pipeline(seed=0).transformer
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_encode_decode_shapes(model: SD3FlowModel) -> None:
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        latents = model.encode_images(images, generator=torch.Generator().manual_seed(0))
        assert latents.shape == (2, *model.latent_shape)
        decoded = model.decode(latents)
    assert decoded.shape == images.shape and decoded.min() >= 0 and decoded.max() <= 1


@pytest.mark.parametrize("with_t5", [True, False])
def test_save_and_load_round_trip(tmp_path, with_t5: bool) -> None:
    m = SD3FlowModel(tiny_random_pipeline(seed=1, with_t5=with_t5), image_size=32, max_sequence_length=16)
    m.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert isinstance(loaded, SD3FlowModel)
    assert (loaded.image_size, loaded.max_sequence_length) == (32, 16)
    assert (loaded.pipe.text_encoder_3 is None) == (not with_t5)
    torch.testing.assert_close(_fixed_velocity(loaded), _fixed_velocity(m), atol=0, rtol=0)


def test_load_model_dispatches_tiny_checkpoints(tmp_path) -> None:
    tiny = TinyFlowModel(TinyConfig(num_layers=1, text_layers=1), PromptTokenizer(["a", "red", "circle"]))
    tiny.save(tmp_path)
    assert isinstance(load_model(str(tmp_path)), TinyFlowModel)


def test_missing_folder_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist.*omit --model"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="does not exist.*--model PATH"):
        SD3FlowModel.from_pretrained(tmp_path / "nope")


def test_folder_that_is_not_a_pipeline(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a model folder"):
        load_model(str(tmp_path))
    with pytest.raises(ValueError, match="no model_index.json.*--model PATH"):
        SD3FlowModel.from_pretrained(tmp_path)


def test_offline_hub_id_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these at import time, so set the module constants too; an empty cache
    # keeps a real SD3.5 download on this machine from being loaded.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_model("stabilityai/stable-diffusion-3.5-medium")
    message = str(info.value)
    assert "not in the local Hugging Face cache" in message
    assert "download stabilityai/stable-diffusion-3.5-medium to a local folder" in message
    assert "--model PATH" in message


def test_lora_targets_exist_in_sd3_transformer() -> None:
    from peft import LoraConfig

    transformer = tiny_random_pipeline(seed=0).transformer
    names = [name for name, _ in transformer.named_modules()]
    for target in LORA_TARGET_MODULES:
        assert any(n == target or n.endswith("." + target) for n in names), target
    transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=list(LORA_TARGET_MODULES)))
    lora = [n for n, p in transformer.named_parameters() if "lora_" in n]
    assert lora and all(p.requires_grad for n, p in transformer.named_parameters() if "lora_" in n)


def test_the_resolution_is_a_parameter_not_a_hidden_file(tmp_path) -> None:
    from flowopd.models.sd3 import SETTINGS_FILE, default_resolution

    m = SD3FlowModel(tiny_random_pipeline(seed=1), image_size=32, max_sequence_length=16)
    m.save_pretrained(tmp_path)
    (tmp_path / SETTINGS_FILE).unlink()  # a pipeline folder as diffusers writes it
    plain = load_model(str(tmp_path))
    assert plain.image_size == default_resolution(m.transformer, m.vae_scale_factor)  # the family's, capped
    assert load_model(str(tmp_path), resolution=16).image_size == 16
    with pytest.raises(ValueError, match="resolution 25 does not suit.*pass --resolution"):
        load_model(str(tmp_path), resolution=25)
    with pytest.raises(ValueError, match="resolution=64 is invalid for the tiny model.*leave resolution unset"):
        load_model(None, resolution=64)


def test_family_default_resolutions() -> None:
    from types import SimpleNamespace

    from flowopd.models.sd3 import default_resolution

    def t(layers, dual):
        return SimpleNamespace(config=SimpleNamespace(num_layers=layers, dual_attention_layers=dual,
                                                      pos_embed_max_size=384 if dual else 192, patch_size=2))

    assert default_resolution(t(24, tuple(range(13)))) == 512  # SD3.5 Medium: Flow-GRPO's setting
    assert default_resolution(t(38, ())) == 1024  # SD3.5 Large
    assert default_resolution(t(24, ())) == 1024  # SD3 Medium
