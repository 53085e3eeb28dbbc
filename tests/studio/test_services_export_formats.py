"""Every export format through export_adapter, verified on the base (the tiny model: flowopd, peft, fused; a tiny
random SD3 pipeline: all five, diffusers through StableDiffusion3Pipeline.load_lora_weights), and the LoRA import
reading each export, and a Flow-GRPO-style peft teacher, back to the same transformer outputs."""

from __future__ import annotations

import json

import pytest
import torch

from flowopd_studio.services.export import FORMATS, export_adapter
from flowopd_studio.services.lora_import import ImportRefused, check_lora, convert, inspect_lora

R, ALPHA = 4, 8.0
FLOW_GRPO_TARGETS = ["attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out", "attn.to_k",
                     "attn.to_out.0", "attn.to_q", "attn.to_v"]  # Flow-GRPO's train_sd3.py LoraConfig


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    """(tiny SD3 model with adapter "trained", r 4 alpha 8, random A and B; its folder; fixed transformer inputs)."""
    from flowopd.adapters import adapter_parameters, add_lora, save_adapter
    from flowopd.models.sd3 import SD3FlowModel
    from flowopd.testing import tiny_random_pipeline

    model = SD3FlowModel(tiny_random_pipeline(seed=0), image_size=32, max_sequence_length=16)
    add_lora(model, "trained", R, ALPHA, seed=0)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in adapter_parameters(model, "trained").values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    folder = save_adapter(model, "trained", tmp_path_factory.mktemp("sd3") / "adapter")
    g = torch.Generator().manual_seed(7)
    inputs = dict(hidden_states=torch.randn(2, 16, 16, 16, generator=g), timestep=torch.tensor([900.0, 300.0]),
                  encoder_hidden_states=torch.randn(2, 32, 64, generator=g),
                  pooled_projections=torch.randn(2, 64, generator=g), return_dict=False)
    return model, folder, inputs


def _outputs(model, name, inputs) -> torch.Tensor:
    from flowopd.adapters import use_adapter

    with torch.no_grad(), use_adapter(model, name):
        return model.transformer(**inputs)[0]


def test_tiny_model_exports_flowopd_peft_and_fused_verified(small_model, make_adapter, tmp_path):
    source = make_adapter(small_model, tmp_path / "a", zero=False, seed=3)
    result = export_adapter(source, tmp_path / "exports", formats=("flowopd", "peft", "fused"), model=small_model,
                            name="t")
    assert result.verified
    for rel in ("peft/adapter_config.json", "peft/adapter_model.safetensors", "fused/config.json",
                "fused/diffusion_pytorch_model.safetensors", "flowopd/README.md", "peft/README.md", "fused/README.md"):
        assert (result.folder / rel).is_file(), rel
    assert "PeftModel.from_pretrained" in result.card and "SD3Transformer2DModel.from_pretrained" in result.card
    shas = json.loads((result.folder / "export.json").read_text())["verify"]["sha256_by_format"]
    assert set(shas) == {"flowopd", "peft", "fused"} and shas["flowopd"] == shas["peft"] == result.image_sha256


def test_sd3_exports_every_format_verified_and_each_imports_back(sd3, tmp_path):
    from flowopd.adapters import load_adapter

    model, folder, inputs = sd3
    result = export_adapter(folder, tmp_path / "exports", formats=tuple(FORMATS), model=model, name="s")
    assert result.verified and set(result.formats) == {"flowopd", "diffusers", "comfyui", "peft", "fused"}
    assert (result.folder / "comfyui" / "lora_comfyui.safetensors").is_file()
    want = _outputs(model, "trained", inputs)
    targets = tuple(model.lora_target_modules)
    for fmt, label in (("flowopd", "ours"), ("diffusers", "diffusers"), ("comfyui", "comfyui"), ("peft", "peft")):
        info = check_lora(inspect_lora(result.folder / fmt, targets), model)
        assert (info.format, info.rank, info.alpha, info.base, info.problems, info.zero_filled) == \
            (label, R, ALPHA, model.model_id, [], []), fmt
        load_adapter(model, convert(info, model, tmp_path / "imported" / fmt), f"imported_{fmt}")
        torch.testing.assert_close(_outputs(model, f"imported_{fmt}", inputs), want, atol=0, rtol=0)


def test_a_flow_grpo_peft_teacher_imports_with_its_missing_layers_zero(sd3, tmp_path):
    """Flow-GRPO adapts attn.* only; SD3.5-M's dual-attention attn2 layers get zero LoRA weights (same outputs)."""
    from peft import LoraConfig, get_peft_model

    from flowopd.adapters import load_adapter
    from flowopd.testing import tiny_random_pipeline

    model, _, inputs = sd3
    teacher = get_peft_model(tiny_random_pipeline(seed=0).transformer,
                             LoraConfig(r=R, lora_alpha=ALPHA, init_lora_weights="gaussian",
                                        target_modules=FLOW_GRPO_TARGETS))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in teacher.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        want = teacher(**inputs)[0]
    teacher.save_pretrained(str(tmp_path / "geneval"))
    config_file = tmp_path / "geneval" / "adapter_config.json"  # the base Flow-GRPO's teachers name
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()),
                                       "base_model_name_or_path": "stabilityai/stable-diffusion-3.5-medium"}))
    info = check_lora(inspect_lora(tmp_path / "geneval", tuple(model.lora_target_modules)), model)
    assert (info.format, info.rank, info.alpha, info.problems) == ("peft", R, ALPHA, [])
    assert info.base == "stabilityai/stable-diffusion-3.5-medium"
    assert info.zero_filled == [f"transformer_blocks.0.attn2.{m}" for m in ("to_k", "to_out.0", "to_q", "to_v")]
    load_adapter(model, convert(info, model, tmp_path / "imported"), "flow_grpo")
    torch.testing.assert_close(_outputs(model, "flow_grpo", inputs), want, atol=1e-6, rtol=0)


def test_import_refuses_mismatches_clearly(sd3, small_model, tmp_path):
    model, folder, _ = sd3
    peft = tmp_path / "peft"
    export_adapter(folder, tmp_path / "exports", formats=("peft",), name="p")  # no model: written, not verified
    (tmp_path / "exports" / "p" / "peft").rename(peft)
    config = json.loads((peft / "adapter_config.json").read_text())
    (peft / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    with pytest.raises(ImportRefused, match="config says r=8 but its weights have rank 4"):
        inspect_lora(peft)
    (peft / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ImportRefused, match=r"sets use_dora: a DoRA cannot be read as a LoRA"):
        inspect_lora(peft)
    (peft / "adapter_config.json").write_text(json.dumps(config))
    info = check_lora(inspect_lora(peft, tuple(small_model.lora_target_modules)), small_model)  # SD3 LoRA, tiny model
    assert any("in the base model, the LoRA expects" in p for p in info.problems)
    assert any(f"it was trained on base model {model.model_id!r}" in p for p in info.problems)
