"""Community LoRA key layouts (flowopd.adapters.layouts, formats.read): a file of each layout ComfyUI accepts for
SD3, written here from a known update per module, imports to that update; per-module ranks and alphas, rslora,
peft's patterns and alpha 0 at their exact strength; what cannot be read is refused with the reason."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from flowopd.adapters.formats import LoraFormatError, read
from flowopd.adapters.layouts import dotted, native_modules, parse_key

W = 64
ATTN = ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj", "attn.add_k_proj",
        "attn.add_v_proj", "attn.to_add_out")


def known(ranks: dict[str, int], alphas: dict[str, float], seed: int = 0) -> dict[str, tuple]:
    """module -> (A [r, W], B [W, r], alpha) with random A and B."""
    g = torch.Generator().manual_seed(seed)
    return {m: (torch.randn(r, W, generator=g), torch.randn(W, r, generator=g), alphas[m]) for m, r in ranks.items()}


def imported_delta(path) -> tuple[dict[str, torch.Tensor], object]:
    info, tensors = read(path)
    scale = info.alpha / info.rank
    return {m: scale * tensors[f"{m}.lora_B.weight"] @ tensors[f"{m}.lora_A.weight"] for m in info.modules}, info


def assert_deltas(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for m in want:
        torch.testing.assert_close(got[m], want[m], atol=1e-6, rtol=1e-6)


def modules_of(block: int) -> list[str]:
    return [f"transformer_blocks.{block}.{a}" for a in ATTN]


@pytest.mark.parametrize("layout", ["diffusers", "peft", "onetrainer", "plain"])
def test_diffusers_named_layouts_import_to_the_known_update(tmp_path, layout) -> None:
    mods = modules_of(0)
    ranks = {m: (4 if i % 2 else 8) for i, m in enumerate(mods)}  # ranks and alphas differ by module
    alphas = {m: float(2 + i) for i, m in enumerate(mods)}
    lora = known(ranks, alphas)
    tensors, path = {}, tmp_path / "lora.safetensors"
    for m, (a, b, alpha) in lora.items():
        if layout == "onetrainer":
            stem = "lora_transformer_" + m.replace(".", "_")
            tensors.update({f"{stem}.lora_down.weight": a, f"{stem}.lora_up.weight": b,
                            f"{stem}.alpha": torch.tensor(alpha)})
            continue
        prefix = {"diffusers": "transformer.", "peft": "base_model.model.", "plain": ""}[layout]
        tensors.update({f"{prefix}{m}.lora_A.weight": a, f"{prefix}{m}.lora_B.weight": b,
                        f"{prefix}{m}.alpha": torch.tensor(alpha)})
    save_file(tensors, str(path))
    got, info = imported_delta(path)
    assert info.layout == layout.replace("plain", "flowopd") and info.rank == 8 and info.scales is not None
    assert_deltas(got, {m: (alpha / a.shape[0]) * b @ a for m, (a, b, alpha) in lora.items()})


@pytest.mark.parametrize("layout", ["kohya", "native"])
def test_sd3_native_names_with_fused_qkv_import_exactly(tmp_path, layout) -> None:
    g = torch.Generator().manual_seed(1)
    r, alpha, want, tensors = 4, 3.0, {}, {}
    for native, targets in (("joint_blocks.0.x_block.attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
                            ("joint_blocks.0.context_block.attn.qkv",
                             ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
                            ("joint_blocks.0.x_block.attn2.qkv", ("attn2.to_q", "attn2.to_k", "attn2.to_v")),
                            ("joint_blocks.1.x_block.attn.proj", ("attn.to_out.0",)),
                            ("joint_blocks.1.context_block.attn.proj", ("attn.to_add_out",)),
                            ("joint_blocks.1.x_block.mlp.fc1", ("ff.net.0.proj",))):
        down = torch.randn(r, W, generator=g)
        ups = [torch.randn(4 * W if t == "ff.net.0.proj" else W, r, generator=g) for t in targets]
        block = native.split(".")[1]
        for t, up in zip(targets, ups, strict=True):
            want[f"transformer_blocks.{block}.{t}"] = (alpha / r) * up @ down
        stem = "lora_unet_" + native.replace(".", "_") if layout == "kohya" else "diffusion_model." + native
        parts = ("lora_down", "lora_up") if layout == "kohya" else ("lora_A", "lora_B")
        tensors.update({f"{stem}.{parts[0]}.weight": down, f"{stem}.{parts[1]}.weight": torch.cat(ups),
                        f"{stem}.alpha": torch.tensor(alpha)})
    save_file(tensors, str(tmp_path / "sd3.safetensors"))
    got, info = imported_delta(tmp_path / "sd3.safetensors")
    assert info.layout == layout and (info.rank, info.alpha, info.scales) == (r, alpha, None)
    assert_deltas(got, want)


def test_diffusers_metadata_rslora_and_patterns_at_their_exact_strength(tmp_path) -> None:
    mods = modules_of(1)
    ranks = {m: (8 if m.endswith("to_q") else 4) for m in mods}
    alphas = {m: (16.0 if m.endswith("to_out.0") else 4.0) for m in mods}
    lora = known(ranks, alphas, seed=2)
    tensors = {f"transformer.{m}.lora_{p}.weight": t for m, (a, b, _) in lora.items() for p, t in (("A", a), ("B", b))}
    config = {"r": 4, "lora_alpha": 4.0, "use_rslora": True, "rank_pattern": {"to_q": 8},
              "alpha_pattern": {"to_out.0": 16.0}, "target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}
    meta = {"lora_adapter_metadata": json.dumps({f"transformer.{k}": v for k, v in config.items()})}
    save_file(tensors, str(tmp_path / "pytorch_lora_weights.safetensors"), metadata=meta)
    got, info = imported_delta(tmp_path / "pytorch_lora_weights.safetensors")
    assert info.rank == 8 and info.alpha == 8.0
    assert_deltas(got, {m: (alpha / math.sqrt(a.shape[0])) * b @ a for m, (a, b, alpha) in lora.items()})


def test_alpha_zero_is_read_as_zero(tmp_path) -> None:
    (m,) = modules_of(0)[:1]
    a, b = torch.randn(4, W), torch.randn(W, 4)
    save_file({f"transformer.{m}.lora_A.weight": a, f"transformer.{m}.lora_B.weight": b,
               f"transformer.{m}.alpha": torch.tensor(0.0)}, str(tmp_path / "z.safetensors"))
    got, _ = imported_delta(tmp_path / "z.safetensors")
    assert torch.equal(got[m], torch.zeros(W, W))


@pytest.mark.parametrize(("key", "message"), [
    ("lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", "text-encoder LoRA"),
    ("lora_unet_joint_blocks_0_x_block_attn_qkv.hada_w1_a", "LyCORIS LoHa/LoKr"),
    ("transformer.transformer_blocks.0.attn.to_q.dora_scale", "DoRA"),
    ("lora_unet_joint_blocks_0_x_block_adaLN_modulation_1.lora_down.weight", "no exact counterpart"),
])
def test_what_cannot_be_read_is_refused_with_the_reason(tmp_path, key, message) -> None:
    m = modules_of(0)[0]
    save_file({f"transformer.{m}.lora_A.weight": torch.randn(4, W), f"transformer.{m}.lora_B.weight": torch.randn(W, 4),
               key: torch.randn(4, W)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(LoraFormatError, match=message):
        read(tmp_path / "x.safetensors")


def test_a_rank_mismatch_and_non_finite_weights_are_refused(tmp_path) -> None:
    m = modules_of(0)[0]
    save_file({f"transformer.{m}.lora_A.weight": torch.randn(4, W),
               f"transformer.{m}.lora_B.weight": torch.randn(W, 8)},
              str(tmp_path / "r.safetensors"))
    with pytest.raises(LoraFormatError, match="A of rank 4 and B of rank 8"):
        read(tmp_path / "r.safetensors")
    b = torch.randn(W, 4)
    b[3, 1] = float("nan")
    save_file({f"transformer.{m}.lora_A.weight": torch.randn(4, W), f"transformer.{m}.lora_B.weight": b},
              str(tmp_path / "n.safetensors"))
    with pytest.raises(LoraFormatError, match="NaN or infinite"):
        read(tmp_path / "n.safetensors")


def test_names() -> None:
    from flowopd.adapters.layouts import LayoutError

    with pytest.raises(LayoutError, match="not a module of SD3's transformer"):
        dotted("transformer_blocks_1_unknown_layer", ("transformer_blocks", "attn"))
    assert parse_key("lora_transformer_transformer_blocks_12_attn_to_add_out.lora_up.weight").modules == (
        "transformer_blocks.12.attn.to_add_out",)
    assert native_modules("joint_blocks.3.context_block.mlp.fc2") == ("transformer_blocks.3.ff_context.net.2",)
